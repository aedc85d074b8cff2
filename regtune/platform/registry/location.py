"""Where versions live: the registry root, model names, version directories, references.

Layout under the storage root (the same root sweeps write their experiments
to, ``$REGTUNE_STORAGE`` or ``~/regtune_runs``)::

    <storage>/registry/<name>/v1/   weights.safetensors, meta.json
                             v2/
                             .staging-*/   unpublished writes (ignored)

A reference names one version: ``"name"`` (the latest), ``"name:3"``, or a
path to a version directory (anything holding a ``meta.json``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from regtune.errors import SpecError

__all__ = [
    "DEFAULT_STORAGE",
    "META_FILE",
    "REGISTRY_DIR",
    "STORAGE_ENV",
    "WEIGHTS_FILE",
    "VersionRef",
    "check_name",
    "list_models",
    "list_versions",
    "local_root",
    "parse_ref",
    "registry_root",
    "storage_root",
    "version_dir",
]

#: Environment variable naming the storage root; the same rule as
#: :func:`regtune.platform.tune.sweep.default_storage` (kept in step by a test).
STORAGE_ENV = "REGTUNE_STORAGE"
DEFAULT_STORAGE = "~/regtune_runs"
#: Subdirectory of the storage root holding every model.
REGISTRY_DIR = "registry"
META_FILE = "meta.json"
WEIGHTS_FILE = "weights.safetensors"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")

BAD_NAME = (
    "model name {name!r} is not allowed; use 1-64 letters, digits, '_', '.' or '-', "
    "starting with a letter or digit"
)
BAD_VERSION = (
    "version {value!r} in {ref!r} is not allowed; expected a positive integer, e.g. {name}:3"
)
EMPTY_REF = "a model reference must not be empty; expected NAME, NAME:VERSION or a directory"
REMOTE_ROOT = (
    "registry root {root!r} is a URI; this version of the registry reads and writes local "
    "paths (or file:// URIs) only; copy the registry to a local directory first"
)


def storage_root(storage: str | None = None) -> str:
    """``storage``, else ``$REGTUNE_STORAGE``, else ``~/regtune_runs``; paths made absolute."""
    value = storage or os.environ.get(STORAGE_ENV, DEFAULT_STORAGE)
    if "://" in value:
        return value
    return str(Path(value).expanduser().resolve())


def registry_root(storage: str | None = None) -> str:
    """The registry directory under the storage root: ``<storage>/registry``."""
    return f"{storage_root(storage).rstrip('/')}/{REGISTRY_DIR}"


def local_root(root: str | None) -> Path:
    """The registry root as a local path (``root`` or the default one).

    Raises:
        SpecError: ``root`` is a URI other than ``file://``.
    """
    value = root if root is not None else registry_root()
    if value.startswith("file://"):
        value = value[len("file://") :]
    elif "://" in value:
        raise SpecError(REMOTE_ROOT.format(root=value))
    return Path(value).expanduser().resolve()


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name.

    Raises:
        SpecError: naming the value and the allowed characters.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(BAD_NAME.format(name=name))
    return name


def version_dir(root: Path, name: str, version: int) -> Path:
    """Directory of ``name``'s version ``version`` under ``root``."""
    return root / name / f"v{version}"


def list_versions(name: str, *, root: str | None = None) -> list[int]:
    """Published versions of ``name``, ascending (empty if the model does not exist)."""
    base = local_root(root) / check_name(name)
    if not base.is_dir():
        return []
    found = []
    for entry in base.iterdir():
        match = _VERSION_DIR.match(entry.name)
        if match and (entry / META_FILE).is_file():
            found.append(int(match.group(1)))
    return sorted(found)


def list_models(*, root: str | None = None) -> list[str]:
    """Names of models with at least one published version, sorted."""
    base = local_root(root)
    if not base.is_dir():
        return []
    return sorted(
        entry.name
        for entry in base.iterdir()
        if entry.is_dir() and _NAME.match(entry.name) and list_versions(entry.name, root=str(base))
    )


@dataclass(frozen=True)
class VersionRef:
    """A parsed reference: a ``name`` with an optional ``version``, or a ``path``."""

    name: str | None
    version: int | None
    path: Path | None


def parse_ref(ref: str) -> VersionRef:
    """Parse ``"name"``, ``"name:3"`` or a version directory path.

    A reference is a path when it contains a path separator or names an
    existing directory with a ``meta.json``.

    Raises:
        SpecError: an empty reference, a bad name or a version that is not a
            positive integer.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise SpecError(EMPTY_REF)
    candidate = Path(ref).expanduser()
    if "/" in ref or os.sep in ref or (candidate / META_FILE).is_file():
        return VersionRef(None, None, candidate)
    name, sep, raw_version = ref.partition(":")
    check_name(name)
    if not sep:
        return VersionRef(name, None, None)
    if not raw_version.isdigit() or int(raw_version) < 1:
        raise SpecError(BAD_VERSION.format(value=raw_version, ref=ref, name=name))
    return VersionRef(name, int(raw_version), None)
