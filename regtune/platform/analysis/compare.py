"""What differs between several experiments analysed together (``regtune analyze A B``):
their specs, and names that tell them apart (in tables, legends and figure files)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from regtune.search_spaces import SweepSpec

__all__ = [
    "MAX_FIGURE_STEM",
    "MISSING",
    "NO_SPEC",
    "distinct_names",
    "figure_stem",
    "flatten_spec",
    "spec_differences",
]

#: Shown where one spec has a key another lacks.
MISSING = "(absent)"
#: Shown for an experiment whose spec was not stored.
NO_SPEC = "(no spec stored)"
# Keys every experiment differs in by construction: not worth a row.
_IGNORED = ("name", "description")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def flatten_spec(spec: SweepSpec) -> dict[str, str]:
    """The spec as ``{dotted.key: value as text}``; a distribution stays one value
    (``{"loguniform": [1e-06, 0.01]}``), so a changed range is one row."""
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        is_distribution = (
            isinstance(node, Mapping)
            and len(node) == 1
            and isinstance(next(iter(node.values())), list)
        )
        if isinstance(node, Mapping) and node and not is_distribution:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            out[prefix] = _text(node)

    walk(spec.to_dict(), "")
    return out


def spec_differences(specs: Mapping[str, SweepSpec | None]) -> pd.DataFrame:
    """One row per spec key whose value differs between experiments (index: the key),
    one column per experiment. Empty when all specs agree (or fewer than two)."""
    flat = {name: flatten_spec(spec) if spec is not None else None for name, spec in specs.items()}
    keys: dict[str, None] = {}
    for values in flat.values():
        keys.update(dict.fromkeys(values or {}))
    rows = {}
    for key in keys:
        if key in _IGNORED:
            continue
        row = {
            name: (values.get(key, MISSING) if values is not None else NO_SPEC)
            for name, values in flat.items()
        }
        if len(set(row.values())) > 1:
            rows[key] = row
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(specs))
    table.index.name = "key"
    return table


def distinct_names(names: Sequence[str], paths: Sequence[str]) -> list[str]:
    """``names`` made unique, for experiments shown together: a name shared by several
    experiments (two ``runs/quick`` folders under different parents) becomes
    ``<parent folder>/<name>``, and if that is still shared, gets ``#2``, ``#3`` ...
    in the order given. Unshared names are kept."""
    if len(names) != len(paths):
        raise ValueError(f"{len(names)} names but {len(paths)} paths")
    out = list(names)
    for i, name in enumerate(names):
        if names.count(name) > 1:
            parts = [p for p in re.split(r"[/\\]+", paths[i].split("://", 1)[-1]) if p]
            parent = parts[-2] if len(parts) >= 2 else ""
            out[i] = f"{parent}/{name}" if parent else name
    seen: dict[str, int] = {}
    for i, name in enumerate(out):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            out[i] = f"{name}#{seen[name]}"
    return out


#: The longest :func:`figure_stem`, in characters (ASCII: bytes too): with the longest
#: figure suffix (``-path-<parameter>.png``) a file name stays within the 255 bytes file
#: systems allow, for any experiment name (up to 255 characters, or a longer
#: ``<parent>/<name>#2`` of :func:`distinct_names`).
MAX_FIGURE_STEM = 120
#: Hex digits of the name's hash that end a shortened :func:`figure_stem`.
_STEM_HASH = 10


def figure_stem(name: str) -> str:
    """An experiment's name as the start of a figure's file name: characters other
    than letters, digits, ``.``, ``_``, ``#`` and ``-`` (a ``/`` from
    :func:`distinct_names`) become ``_``; ``experiment`` when empty. One longer than
    :data:`MAX_FIGURE_STEM` becomes its first characters, ``-`` and the first
    ``_STEM_HASH`` hex digits of the whole name's SHA-256 (the same for the same name,
    different for names differing past the prefix)."""
    stem = re.sub(r"[^A-Za-z0-9._#-]", "_", name) or "experiment"
    if len(stem) <= MAX_FIGURE_STEM:
        return stem
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_STEM_HASH]
    return f"{stem[: MAX_FIGURE_STEM - _STEM_HASH - 1]}-{digest}"
