"""Where everything regtune writes lives: the storage root (a path or a URI).

Experiments (``<root>/<name>``), their results and the model registry
(``<root>/registry``) all sit under one root: ``--storage``, else
``$REGTUNE_STORAGE``, else ``~/regtune_runs``. Imports nothing heavy, so
the analysis and the registry use it without Ray.

:func:`check_storage` refuses a root nothing can be written to (a file, a
folder under a file, an unknown URI scheme, a bucket-less ``s3://``) with a
:class:`~regtune.errors.SpecError` naming the option it came from, so a sweep
stops before Ray starts rather than in a traceback after it. A bucket-less
object-store URI is refused in the same words by :func:`storage_root` itself,
so every command that reads the root (the registry's, ``analyze``, ``serve``)
refuses it too, rather than reading a local ``s3:/...`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from regtune.errors import SpecError
from regtune.trainables.paths import NoHomeError, expand_user

__all__ = [
    "BAD_STORAGE",
    "BUCKET_SCHEMES",
    "DEFAULT_STORAGE",
    "NO_BUCKET",
    "OBJECT_STORES",
    "STORAGE_ENV",
    "check_storage",
    "is_object_store",
    "names_no_bucket",
    "storage_option",
    "storage_root",
]

#: pyarrow ``type_name`` of the object stores (no folders).
OBJECT_STORES = frozenset({"s3", "gcs"})

#: URI schemes of the object stores (pyarrow's spelling): a root there names a bucket.
BUCKET_SCHEMES = frozenset({"s3", "gs", "gcs"})
#: Why an object-store URI naming no bucket is refused (:data:`BAD_STORAGE`'s reason).
NO_BUCKET = "no bucket named"
#: BAD_STORAGE's reason for an empty value (an unset shell variable, ``--storage ""``):
#: it read as the current folder or the default, neither of which was asked for.
EMPTY_ROOT = "it is empty; leave it out for the default"

#: Environment variable naming the default storage root (a path or URI).
STORAGE_ENV = "REGTUNE_STORAGE"
DEFAULT_STORAGE = "~/regtune_runs"

BAD_STORAGE = (
    "{option} {root!r}: not usable as the storage root ({reason}); expected a folder "
    "(writable, for a command that writes there) or an s3:// / gs:// URI naming a bucket"
)


def storage_root(storage: str | None = None) -> str:
    """``storage``, else ``$REGTUNE_STORAGE``, else ``~/regtune_runs``; paths made absolute.

    Every command reads its root here, so an object-store URI naming no bucket
    (``s3://``, ``gs://``, ``s3://?region=...``) is refused here for all of
    them: ``<root>/registry`` would be ``s3:/registry``, a local folder.

    Raises:
        SpecError: an object-store URI without a bucket, or a ``~user`` naming
            no user, in :data:`BAD_STORAGE`'s words (naming ``--storage`` or
            ``REGTUNE_STORAGE`` and the value).
    """
    if storage is not None and not storage.strip():
        raise SpecError(BAD_STORAGE.format(option="--storage", root=storage, reason=EMPTY_ROOT))
    env = os.environ.get(STORAGE_ENV)
    if storage is None and env is not None and not env.strip():
        raise SpecError(BAD_STORAGE.format(option=STORAGE_ENV, root=env, reason=EMPTY_ROOT))
    value = storage or env or DEFAULT_STORAGE
    if "://" in value:
        if names_no_bucket(value):
            option = storage_option(storage)
            raise SpecError(BAD_STORAGE.format(option=option, root=value, reason=NO_BUCKET))
        return value
    try:
        expanded = expand_user(value)
    except NoHomeError as exc:
        option = storage_option(storage)
        raise SpecError(BAD_STORAGE.format(option=option, root=value, reason=exc)) from exc
    return str(expanded.resolve())


def is_object_store(fs: Any) -> bool:
    """Whether ``fs`` (a pyarrow filesystem) is an object store (S3, GCS):
    no folders to make there, and making their marker objects would cost a
    bucket look-up and one request per level, every write. Other
    filesystems (local, HDFS, ...) get their folders made as before. A
    Python-implemented wrapper (pyarrow names it ``py::<name>``; fsspec's
    ``fsspec+s3``) counts as the store it wraps."""
    name = str(getattr(fs, "type_name", "")).removeprefix("py::")
    return name.rsplit("+", 1)[-1] in OBJECT_STORES


def names_no_bucket(root: str) -> bool:
    """Whether ``root`` is an object-store URI naming no bucket (``s3://``,
    ``gs:///``, ``s3://?region=...``): what pyarrow would read as the bucket
    and key, before any ``?option=``, is empty."""
    scheme, sep, rest = root.partition("://")
    return bool(sep) and scheme in BUCKET_SCHEMES and not rest.partition("?")[0].strip("/")


def storage_option(storage: str | None = None) -> str:
    """How the user named the root :func:`storage_root` picks, for messages:
    ``--storage`` (given), ``REGTUNE_STORAGE`` (from the environment) or
    ``the default storage``."""
    if storage:
        return "--storage"
    if os.environ.get(STORAGE_ENV):
        return STORAGE_ENV
    return "the default storage"


def check_storage(storage: str | None = None, *, create: bool = True) -> str:
    """The storage root :func:`storage_root` picks, checked to be writable.

    A local path (or ``file://`` URI) has its folders made
    (``mkdir -p``) and must be writable (``create=False``, for a command
    that only reads it, such as a resume's look-up: nothing is made, and
    only a file in the way is refused); any other URI must name a
    filesystem pyarrow knows (``s3://``, ``gs://``, ``hdfs://``, ...) and,
    on an object store, a bucket. Nothing is written to a URI: a bucket's
    permissions are found when the first file is.

    Raises:
        SpecError: the root cannot be used; the message names where it came
            from (``--storage`` or ``REGTUNE_STORAGE``), the value as given
            and why.
    """
    given = storage or os.environ.get(STORAGE_ENV, DEFAULT_STORAGE)
    root = storage_root(storage)
    reason = _uri_problem(root, create) if "://" in root else _folder_problem(Path(root), create)
    if reason is not None:
        option = storage_option(storage)
        raise SpecError(BAD_STORAGE.format(option=option, root=given, reason=reason))
    return root


def _uri_problem(uri: str, create: bool) -> str | None:
    """Why pyarrow cannot open ``uri`` as a storage root, or None."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    # ArrowInvalid (a ValueError): an unknown scheme, a missing bucket;
    # OSError: a bucket whose region cannot be looked up.
    except (pa.ArrowException, ValueError, OSError) as exc:
        return str(exc)
    if isinstance(fs, pafs.LocalFileSystem):
        return _folder_problem(Path(path), create)
    if is_object_store(fs) and not path.strip("/"):
        return NO_BUCKET
    return None


def _folder_problem(folder: Path, create: bool) -> str | None:
    """Why ``folder`` cannot be made or written in, or None (it is made unless
    ``create`` is False; then only a file in the way is a problem)."""
    if folder.exists() and not folder.is_dir():
        return "it is a file, not a folder"
    if not create:
        blocker = next((p for p in folder.parents if p.exists() and not p.is_dir()), None)
        return None if blocker is None else f"{blocker} is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in folder.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
        return exc.strerror or str(exc)
    # Making a file in a folder needs both bits (root passes W_OK everywhere
    # but on a read-only filesystem).
    if not os.access(folder, os.W_OK | os.X_OK):
        return "no permission to write in it"
    return None
