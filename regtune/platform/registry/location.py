"""Where versions live: the registry root, model names, version directories, references.

Layout under the storage root (the same root sweeps write their experiments
to, ``$REGTUNE_STORAGE`` or ``~/regtune_runs``)::

    <storage>/registry/<name>/v1/   weights.safetensors, meta.json
                             v2/
                             .staging-*/   unpublished writes (ignored)
                             .claims/v<N>/<token>   version-number claims (object stores)
                             .serve/<deployment>/canary-v<N>.json   canary rollbacks
                                 (regtune.serve.markers; deletable when nothing serves)

The storage root is a local path or a URI (``s3://bucket/runs``,
``gs://...``, ``file://...``); see :mod:`regtune.platform.registry.store`.
A version is published when its ``v<N>/meta.json`` exists.

A reference names one version: ``"name"`` (the latest), ``"name:3"``, or a
path to a version directory (anything holding a ``meta.json``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from regtune.errors import SUGGEST_CUTOFF, CheckpointError, SpecError, did_you_mean
from regtune.platform.registry.store import Place, place_of
from regtune.platform.storage import DEFAULT_STORAGE, STORAGE_ENV, storage_root

__all__ = [
    "DEFAULT_STORAGE",
    "META_FILE",
    "REGISTRY_DIR",
    "SHOWN_IN_FULL",
    "STORAGE_ENV",
    "WEIGHTS_FILE",
    "VersionRef",
    "check_name",
    "describe_models",
    "describe_versions",
    "list_models",
    "list_versions",
    "next_version_number",
    "parse_ref",
    "registry_root",
    "resolve_ref",
    "root_place",
    "storage_root",
    "version_dir",
    "version_number",
]

NO_VERSIONS = "model {name!r} has no versions under {root}; registered models: {models}{hint}"
NO_SUCH_VERSION = "model {name!r} has no version {version} under {root}; versions: {versions}"

#: Names (and versions) a message lists in full; past this it summarises, so a
#: registry of hundreds of models or versions still gives a one-line error.
SHOWN_IN_FULL = 10
NOT_A_VERSION = "{path} is not a model version directory (no meta.json)"

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


def registry_root(storage: str | None = None) -> str:
    """The registry directory under the storage root: ``<storage>/registry``."""
    return f"{storage_root(storage).rstrip('/')}/{REGISTRY_DIR}"


def root_place(root: str | None) -> Place:
    """The registry root (``root`` or the default one) as a :class:`Place`.

    Raises:
        SpecError: a URI whose filesystem cannot be opened.
    """
    return place_of(root if root is not None else registry_root())


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name.

    Raises:
        SpecError: naming the value and the allowed characters.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(BAD_NAME.format(name=name))
    return name


def version_dir(root: Place, name: str, version: int) -> Place:
    """Folder of ``name``'s version ``version`` under ``root``."""
    return root.child(name, f"v{version}")


def version_number(folder: str) -> int | None:
    """``N`` for a folder named ``v<N>``, else None."""
    match = _VERSION_DIR.match(folder)
    return int(match.group(1)) if match else None


def next_version_number(model: Place) -> int:
    """One above every ``v<N>`` folder of ``model``, published or not.

    Writers (local and object stores alike) start here: a folder without
    ``meta.json`` (a writer that died, or one still copying) is never
    reused, so a leftover cannot block later versions.
    """
    numbers = (version_number(folder) for folder in model.folders())
    return max((n for n in numbers if n is not None), default=0) + 1


def _published(root: Place, name: str) -> list[int]:
    model = root.child(name)
    found = []
    for folder in model.folders():
        number = version_number(folder)
        if number is not None and model.child(folder).is_file(META_FILE):
            found.append(number)
    return sorted(found)


def list_versions(name: str, *, root: str | None = None) -> list[int]:
    """Published versions of ``name``, ascending (empty if the model does not exist)."""
    return _published(root_place(root), check_name(name))


def list_models(*, root: str | None = None) -> list[str]:
    """Names of models with at least one published version, sorted."""
    base = root_place(root)
    return [folder for folder in base.folders() if _NAME.match(folder) and _published(base, folder)]


def describe_models(names: Sequence[str]) -> str:
    """Model names for a one-line message: all of them up to :data:`SHOWN_IN_FULL`
    (``['a', 'b']``), else the first ones and ``and N more``; ``none`` when empty."""
    if not names:
        return "none"
    shown = list(names[:SHOWN_IN_FULL])
    rest = len(names) - len(shown)
    return f"{shown}" + (f" and {rest} more (regtune models list)" if rest else "")


def describe_versions(versions: Sequence[int]) -> str:
    """Ascending version numbers for a one-line message: the list up to
    :data:`SHOWN_IN_FULL` (``[1, 2, 5]``), else ranges with the gaps left out
    (``1-300, latest 300``; ``1-120, 125-300 (296 in all), latest 300``), at most
    :data:`SHOWN_IN_FULL` ranges and ``and N more ranges``."""
    if len(versions) <= SHOWN_IN_FULL:
        return f"{list(versions)}"
    runs: list[tuple[int, int]] = []
    for v in versions:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    text = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs[:SHOWN_IN_FULL])
    if len(runs) > SHOWN_IN_FULL:
        text += f" and {len(runs) - SHOWN_IN_FULL} more ranges"
    if len(runs) > 1:
        text += f" ({len(versions)} in all)"
    return f"{text}, latest {versions[-1]}"


@dataclass(frozen=True)
class VersionRef:
    """A parsed reference: a ``name`` with an optional ``version``, or a ``path``."""

    name: str | None
    version: int | None
    path: str | None


def parse_ref(ref: str) -> VersionRef:
    """Parse ``"name"``, ``"name:3"`` or a version directory path.

    A reference is a path when it contains a path separator (a URI such as
    ``s3://bucket/registry/m/v2`` included) or names an existing local
    directory with a ``meta.json``.

    Raises:
        SpecError: an empty reference, a bad name or a version that is not a
            positive integer.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise SpecError(EMPTY_REF)
    candidate = Path(ref).expanduser()
    if "/" in ref or os.sep in ref or (candidate / META_FILE).is_file():
        return VersionRef(None, None, ref)
    name, sep, raw_version = ref.partition(":")
    check_name(name)
    if not sep:
        return VersionRef(name, None, None)
    if not raw_version.isdigit() or int(raw_version) < 1:
        raise SpecError(BAD_VERSION.format(value=raw_version, ref=ref, name=name))
    return VersionRef(name, int(raw_version), None)


def resolve_ref(ref: str, root: str | None = None) -> tuple[Place, str | None, int | None]:
    """The directory a reference names, with its model name and version (None for a path).

    Raises:
        SpecError: a malformed reference, an unknown model or version.
        CheckpointError: a path that is not a version directory.
    """
    parsed = parse_ref(ref)
    if parsed.path is not None:
        place = place_of(parsed.path)
        if not place.is_file(META_FILE):
            raise CheckpointError(NOT_A_VERSION.format(path=parsed.path))
        return place, None, None
    assert parsed.name is not None  # parse_ref gives a name or a path
    base = root_place(root)
    versions = list_versions(parsed.name, root=base.display())
    if not versions:
        models = list_models(root=base.display())
        raise SpecError(
            NO_VERSIONS.format(
                name=parsed.name,
                root=base.display(),
                models=describe_models(models),
                hint=_suggestion(parsed.name, models),
            )
        )
    number = parsed.version if parsed.version is not None else versions[-1]
    if number not in versions:
        raise SpecError(
            NO_SUCH_VERSION.format(
                name=parsed.name,
                version=number,
                root=base.display(),
                versions=describe_versions(versions),
            )
        )
    return version_dir(base, parsed.name, number), parsed.name, number


def _suggestion(word: str, names: list[str]) -> str:
    """:func:`~regtune.errors.did_you_mean`'s hint for a misspelt model name, in its
    wording, naming the name fewest edits away among those it may suggest: difflib's
    ratio alone prefers ``adultstu`` to ``adult1`` for ``adultt`` (more letters
    shared), though ``adult1`` is one edit away. Names difflib would not suggest
    stay out; none close: ``""``."""
    close = difflib.get_close_matches(word, names, n=5, cutoff=SUGGEST_CUTOFF)
    if not close:
        return ""
    return did_you_mean(word, [min(close, key=lambda name: _edits(word, name))])


def _edits(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]
