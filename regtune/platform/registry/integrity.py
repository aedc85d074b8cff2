"""Content hashes of a version's files, and the checks that refuse a damaged version.

``meta.json`` lists every other file with its size and sha256 (``files``) and
carries ``meta_sha256``, the sha256 of its own canonical JSON without that
key. A version is readable only when all of them match: a truncated file is
reported as truncated (size differs), a modified one as tampered (hash
differs), each naming the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from regtune.errors import CheckpointError

__all__ = [
    "DIGEST_KEY",
    "canonical_json",
    "file_entry",
    "meta_digest",
    "verify_files",
    "verify_meta",
]

#: Key of meta.json holding the digest of meta.json itself.
DIGEST_KEY = "meta_sha256"
_CHUNK = 1 << 20

MISSING = "model version {dir}: file {name} is missing; the version lists {listed}"
TRUNCATED = (
    "model version {dir}: file {name} is truncated or resized ({size} bytes, expected "
    "{expected}); the version is damaged, register it again"
)
TAMPERED = (
    "model version {dir}: file {name} was modified (sha256 {actual}, expected {expected}); "
    "refusing to load it"
)
META_TAMPERED = (
    "model version {dir}: file meta.json was modified (sha256 {actual}, expected {expected}); "
    "refusing to load it"
)
META_NO_DIGEST = "model version {dir}: file meta.json has no {key}; it was not written by regtune"
BAD_FILES = "model version {dir}: file meta.json has no valid 'files' table"


def canonical_json(payload: Any) -> bytes:
    """The byte form hashed for ``meta_sha256``: sorted keys, no spaces, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def meta_digest(meta: Mapping[str, Any]) -> str:
    """sha256 of ``meta`` without its :data:`DIGEST_KEY`."""
    body = {k: v for k, v in meta.items() if k != DIGEST_KEY}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of one file."""
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def verify_meta(meta: Mapping[str, Any], directory: Path) -> None:
    """Check ``meta``'s own digest.

    Raises:
        CheckpointError: naming meta.json when the digest is absent or differs.
    """
    expected = meta.get(DIGEST_KEY)
    if not isinstance(expected, str):
        raise CheckpointError(META_NO_DIGEST.format(dir=directory, key=DIGEST_KEY))
    actual = meta_digest(meta)
    if actual != expected:
        raise CheckpointError(
            META_TAMPERED.format(dir=directory, actual=actual[:12], expected=expected[:12])
        )


def verify_files(meta: Mapping[str, Any], directory: Path) -> None:
    """Check every file listed in ``meta["files"]``: present, same size, same sha256.

    Raises:
        CheckpointError: naming the first missing, truncated or modified file.
    """
    files = meta.get("files")
    if not isinstance(files, Mapping) or not files:
        raise CheckpointError(BAD_FILES.format(dir=directory))
    for name, entry in files.items():
        path = directory / name
        if not isinstance(entry, Mapping) or "/" in name or name.startswith("."):
            raise CheckpointError(BAD_FILES.format(dir=directory))
        if not path.is_file():
            raise CheckpointError(MISSING.format(dir=directory, name=name, listed=sorted(files)))
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise CheckpointError(
                TRUNCATED.format(dir=directory, name=name, size=size, expected=entry.get("bytes"))
            )
        actual, expected = _sha256(path), str(entry.get("sha256"))
        if actual != expected:
            raise CheckpointError(
                TAMPERED.format(
                    dir=directory,
                    name=name,
                    actual=actual[:12],
                    expected=expected[:12],
                )
            )
