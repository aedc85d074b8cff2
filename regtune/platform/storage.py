"""Where everything regtune writes lives: the storage root (a path or a URI).

Experiments (``<root>/<name>``), their results and the model registry
(``<root>/registry``) all sit under one root: ``--storage``, else
``$REGTUNE_STORAGE``, else ``~/regtune_runs``. Imports nothing heavy, so
the analysis and the registry use it without Ray.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_STORAGE", "OBJECT_STORES", "STORAGE_ENV", "is_object_store", "storage_root"]

#: pyarrow ``type_name`` of the object stores (no folders).
OBJECT_STORES = frozenset({"s3", "gcs"})

#: Environment variable naming the default storage root (a path or URI).
STORAGE_ENV = "REGTUNE_STORAGE"
DEFAULT_STORAGE = "~/regtune_runs"


def storage_root(storage: str | None = None) -> str:
    """``storage``, else ``$REGTUNE_STORAGE``, else ``~/regtune_runs``; paths made absolute."""
    value = storage or os.environ.get(STORAGE_ENV, DEFAULT_STORAGE)
    if "://" in value:
        return value
    return str(Path(value).expanduser().resolve())


def is_object_store(fs: Any) -> bool:
    """Whether ``fs`` (a pyarrow filesystem) is an object store (S3, GCS):
    no folders to make there, and making their marker objects would cost a
    bucket look-up and one request per level, every write. Other
    filesystems (local, HDFS, ...) get their folders made as before. A
    Python-implemented wrapper (pyarrow names it ``py::<name>``; fsspec's
    ``fsspec+s3``) counts as the store it wraps."""
    name = str(getattr(fs, "type_name", "")).removeprefix("py::")
    return name.rsplit("+", 1)[-1] in OBJECT_STORES
