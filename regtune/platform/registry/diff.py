"""What changed between two versions: config, metrics, lineage and the version's identity.

Pure functions over parsed ``meta.json`` dicts. Nested values are flattened
to dotted keys (``configs.0.penalties.l2``) so a change is one row. Two
floats within a relative :data:`REL_TOL` of each other (the same metric
measured again, float32 noise) are not a change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from regtune.platform.results.schema import is_number

__all__ = ["DIFF_SECTIONS", "REL_TOL", "diff_meta", "flatten", "same_value"]

#: Relative difference below which two floats are the same value (``models
#: diff`` shows numbers to 6 significant digits).
REL_TOL = 1e-6

#: The parts of meta.json compared, in display order (the reference summary
#: and file hashes differ for any two versions and are left out).
DIFF_SECTIONS: tuple[str, ...] = (
    "kind",
    "architecture",
    "configs",
    "metrics",
    "lineage",
    "dataset",
    "quantization",
    "postprocessing",
)

Change = tuple[str, Any, Any]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaves: ``{"a": {"b": [1, 2]}}`` -> ``{"a.b.0": 1, "a.b.1": 2}``."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out or ({prefix: {}} if prefix else {})
    if isinstance(value, list):
        out = {}
        for index, inner in enumerate(value):
            out.update(flatten(inner, f"{prefix}.{index}" if prefix else str(index)))
        return out or ({prefix: []} if prefix else {})
    return {prefix: value}


def same_value(a: Any, b: Any) -> bool:
    """Whether leaves ``a`` and ``b`` are the same: equal (``true`` is not
    ``1``), or two numbers, one of them a float, within :data:`REL_TOL` of
    each other."""
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if a == b:
        return True
    if is_number(a) and is_number(b) and (isinstance(a, float) or isinstance(b, float)):
        return math.isclose(a, b, rel_tol=REL_TOL)
    return False


def diff_meta(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, list[Change]]:
    """Per section, the ``(key, value in a, value in b)`` rows that differ (missing: None)."""
    out: dict[str, list[Change]] = {}
    for section in DIFF_SECTIONS:
        left, right = flatten(a.get(section), section), flatten(b.get(section), section)
        rows = [
            (key, left.get(key), right.get(key))
            for key in sorted(set(left) | set(right))
            if not same_value(left.get(key), right.get(key))
        ]
        if rows:
            out[section] = rows
    return out
