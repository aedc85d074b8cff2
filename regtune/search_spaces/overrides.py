"""``--set KEY.PATH=VALUE`` overrides: parsing them, applying them to a raw spec.

Values are YAML (``penalties.l2={loguniform: [1e-6, 1e-2]}``); overrides
apply to the raw mapping before validation, so derived defaults (scheduler,
searcher) are derived again from the result.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from regtune.errors import SpecError
from regtune.search_spaces.distributions import KeyPath, is_distribution
from regtune.search_spaces.problems import describe
from regtune.search_spaces.yaml_limits import compose

__all__ = [
    "apply_overrides",
    "parse_override",
]

OVERRIDE_SYNTAX = "--set {text!r}: expected KEY.PATH=VALUE, e.g. penalties.l2=0.01"
OVERRIDE_VALUE = "--set {text!r}: the value is not valid YAML: {problem}"
OVERRIDE_INTO_SCALAR = "--set {text!r}: {path} holds {got}, so it has no key {key!r}"
OVERRIDE_INTO_DISTRIBUTION = (
    "--set {text!r}: {path} is a distribution; set {path} itself, e.g. {path}=0.01"
)


def parse_override(text: str) -> tuple[KeyPath, Any]:
    """Split ``KEY.PATH=VALUE`` into a key path and a YAML-parsed value.

    Raises:
        SpecError: no ``=``, an empty key part, or a value that is not YAML.
    """
    key, sep, value_text = text.partition("=")
    parts = tuple(part.strip() for part in key.split("."))
    if not sep or not all(parts):
        raise SpecError(OVERRIDE_SYNTAX.format(text=text))
    try:
        compose(value_text, f"--set {key.strip()}", lines=False)
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(OVERRIDE_VALUE.format(text=text, problem=problem)) from exc
    return parts, value


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``raw`` with each ``KEY.PATH=VALUE`` set (missing
    mappings are created; list items are addressed by index).

    Raises:
        SpecError: a malformed override, or one whose key path goes through a
            scalar or into a distribution.
    """
    out: dict[str, Any] = copy.deepcopy(dict(raw))
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = out
        for depth, part in enumerate(parts):
            where = ".".join(parts[:depth]) or "<root>"
            last = depth == len(parts) - 1
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
                continue
            if not isinstance(node, dict):
                got = describe(node)
                raise SpecError(
                    OVERRIDE_INTO_SCALAR.format(text=text, path=where, got=got, key=part)
                )
            if is_distribution(node) and depth > 0:
                raise SpecError(OVERRIDE_INTO_DISTRIBUTION.format(text=text, path=where))
            if last:
                node[part] = value
                continue
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif depth == 0 and part == "dataset" and isinstance(child, str):
                # ``dataset: digits`` is shorthand for ``dataset: {name: digits}``.
                child = node[part] = {"name": child}
            node = child
    return out
