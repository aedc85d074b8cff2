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
from typing import Any

from regtune.errors import CheckpointError
from regtune.platform.registry.location import META_FILE
from regtune.platform.registry.store import Place

__all__ = [
    "BAD_META",
    "DIGEST_KEY",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_META_BYTES",
    "NOT_OURS",
    "canonical_json",
    "file_entry",
    "meta_digest",
    "read_meta",
    "read_verified",
    "verify_files",
    "verify_meta",
]

#: What meta.json says it is (a version of another format is refused by name).
FORMAT = "regtune-model"
FORMAT_VERSION = 1
BAD_META = "model version {dir}: file meta.json cannot be read ({error})"
NOT_OURS = "model version {dir}: file meta.json is not a {fmt} v{version} file ({what})"

#: Key of meta.json holding the digest of meta.json itself.
DIGEST_KEY = "meta_sha256"

MISSING = "model version {dir}: file {name} is missing; the version lists {listed}"
UNREADABLE = "model version {dir}: file {name} cannot be read ({error})"
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
#: The largest meta.json read (a real one is tens of kilobytes; an ensemble's, hundreds).
MAX_META_BYTES = 64 * 1024 * 1024
META_TOO_BIG = "larger than {limit} bytes"
TOO_DEEP = "arrays or objects nested too deeply"


def canonical_json(payload: Any) -> bytes:
    """The byte form hashed for ``meta_sha256``: sorted keys, no spaces, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def meta_digest(meta: Mapping[str, Any]) -> str:
    """sha256 of ``meta`` without its :data:`DIGEST_KEY`."""
    body = {k: v for k, v in meta.items() if k != DIGEST_KEY}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def file_entry(data: bytes) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of one file's contents."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def verify_meta(meta: Mapping[str, Any], directory: str) -> None:
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


def _listed_size(entry: Mapping[str, Any]) -> int | None:
    """The ``bytes`` a ``files`` entry records (None: not a non-negative integer)."""
    size = entry.get("bytes")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        return None
    return size


def _shown_size(directory: Place, name: str, read: int, expected: int) -> str:
    """The size a truncated or resized file's message shows: ``read`` when the file
    is shorter than ``expected``; for a longer one (read only to one byte past
    ``expected``) the size the filesystem reports, else "more than ``expected``"."""
    if read <= expected:
        return str(read)
    try:
        size = directory.size(name)
    except OSError:
        size = None
    return str(size) if size is not None and size > expected else f"more than {expected}"


def verify_files(meta: Mapping[str, Any], directory: Place) -> dict[str, bytes]:
    """Check every file listed in ``meta["files"]``: present, same size, same sha256.

    No file is read past one byte more than its recorded size: a file that
    grew (or a huge one put in its place) is refused as resized without being
    loaded into memory, and a device or FIFO in its place is refused unread
    (:meth:`~.store.Place.read`).

    Args:
        directory: the version directory (read, and named in messages); a
            missing file reads as None, an ``OSError`` (e.g. a folder or a
            file without read permission in its place) is reported naming
            the file.

    Returns:
        The verified contents by file name (callers use these bytes, not a
        second read that could differ).

    Raises:
        CheckpointError: naming the first missing, unreadable, truncated,
            resized or modified file.
    """
    where = directory.display()
    files = meta.get("files")
    if not isinstance(files, Mapping) or not files:
        raise CheckpointError(BAD_FILES.format(dir=where))
    contents: dict[str, bytes] = {}
    for name, entry in files.items():
        if not isinstance(entry, Mapping) or "/" in name or name.startswith("."):
            raise CheckpointError(BAD_FILES.format(dir=where))
        expected = _listed_size(entry)
        if expected is None:
            raise CheckpointError(BAD_FILES.format(dir=where))
        try:
            data = directory.read(name, limit=expected + 1)
        except OSError as exc:
            raise CheckpointError(UNREADABLE.format(dir=where, name=name, error=exc)) from exc
        if data is None:
            raise CheckpointError(MISSING.format(dir=where, name=name, listed=sorted(files)))
        if len(data) != expected:
            size = _shown_size(directory, name, len(data), expected)
            raise CheckpointError(
                TRUNCATED.format(dir=where, name=name, size=size, expected=expected)
            )
        actual, expected_sha = hashlib.sha256(data).hexdigest(), str(entry.get("sha256"))
        if actual != expected_sha:
            raise CheckpointError(
                TAMPERED.format(
                    dir=where,
                    name=name,
                    actual=actual[:12],
                    expected=expected_sha[:12],
                )
            )
        contents[name] = data
    return contents


def read_verified(directory: Place) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A version's meta.json and the bytes of every file it lists, all verified.

    meta.json is read up to :data:`MAX_META_BYTES` (a bigger one is refused
    unread); one nested too deeply for Python to parse or hash is refused
    like any unreadable meta.json, naming it.

    Raises:
        CheckpointError: naming the file that is missing, unreadable, truncated,
            modified or not of this format.
    """
    where = directory.display()
    try:
        raw = directory.read(META_FILE, limit=MAX_META_BYTES + 1)
        if raw is None:
            raise FileNotFoundError(directory.display(META_FILE))
        if len(raw) > MAX_META_BYTES:
            raise ValueError(META_TOO_BIG.format(limit=MAX_META_BYTES))
        meta = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        # ValueError: JSONDecodeError, UnicodeDecodeError and a number too long
        # to convert; RecursionError: arrays or objects nested too deeply.
        raise CheckpointError(BAD_META.format(dir=where, error=_reason(exc))) from exc
    if not isinstance(meta, dict):
        raise CheckpointError(BAD_META.format(dir=where, error="not a JSON object"))
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        what = f"format {meta.get('format')!r} v{meta.get('format_version')!r}"
        raise CheckpointError(
            NOT_OURS.format(dir=where, fmt=FORMAT, version=FORMAT_VERSION, what=what)
        )
    try:
        verify_meta(meta, where)
    except RecursionError as exc:  # parsed just below the limit, too deep to hash
        raise CheckpointError(BAD_META.format(dir=where, error=_reason(exc))) from exc
    return meta, verify_files(meta, directory)


def _reason(exc: BaseException) -> str:
    """What an unreadable meta.json's message says of ``exc``."""
    if isinstance(exc, RecursionError):
        return TOO_DEEP
    return str(exc)


def read_meta(directory: Place) -> dict[str, Any]:
    """Parse and verify a version's meta.json and the files it lists.

    Raises:
        CheckpointError: naming the file that is missing, unreadable, truncated
            or modified.
    """
    return read_verified(directory)[0]
