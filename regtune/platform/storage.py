"""Where everything regtune writes lives: the storage root (a path or a URI).

Experiments (``<root>/<name>``), their results and the model registry
(``<root>/registry``) all sit under one root: ``--storage``, else
``$REGTUNE_STORAGE``, else ``~/regtune_runs``. Imports nothing heavy, so
the analysis and the registry use it without Ray.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_STORAGE", "STORAGE_ENV", "storage_root"]

#: Environment variable naming the default storage root (a path or URI).
STORAGE_ENV = "REGTUNE_STORAGE"
DEFAULT_STORAGE = "~/regtune_runs"


def storage_root(storage: str | None = None) -> str:
    """``storage``, else ``$REGTUNE_STORAGE``, else ``~/regtune_runs``; paths made absolute."""
    value = storage or os.environ.get(STORAGE_ENV, DEFAULT_STORAGE)
    if "://" in value:
        return value
    return str(Path(value).expanduser().resolve())
