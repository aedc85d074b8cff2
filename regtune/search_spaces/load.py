"""Read sweep specs: from YAML files (with a line index), presets or mappings.

A spec source is a YAML file path, the name of a preset shipped with the
package (see :func:`list_presets`), or an already parsed mapping. Problems
point at the YAML line of their key path; YAML syntax errors and keys given
twice in one mapping (which ``yaml.safe_load`` silently drops) are reported
with theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from regtune.errors import SpecError
from regtune.search_spaces.distributions import KeyPath
from regtune.search_spaces.overrides import apply_overrides
from regtune.search_spaces.problems import dotted
from regtune.search_spaces.sections import SPEC_KEYS, TRAIN_KEYS
from regtune.search_spaces.spec import SweepSpec, build_spec
from regtune.trainables.config import parse_train_config

__all__ = [
    "list_presets",
    "load_spec",
    "load_train_config",
    "preset_path",
    "train_config_from_spec",
]

#: Where the presets shipped with the package live.
PRESETS_DIR = Path(__file__).with_name("presets")
PRESET_SUFFIX = ".yaml"

YAML_SYNTAX = "{file}:{line}:{column}: invalid YAML: {problem}"
YAML_DUPLICATE_KEY = (
    "{file}:{line}: key {key!r} is given twice in one mapping (first on line {first})"
)
YAML_EMPTY = "{file}: the file is empty; a sweep spec is a mapping of {keys}"
UNREADABLE = "{file}: cannot read the file: {reason}"
NO_SUCH_SOURCE = "{source!r} is neither a spec file nor a preset; presets: {presets}"
UNKNOWN_PRESET = "unknown preset {name!r}; presets: {presets}"


def list_presets() -> list[str]:
    """Names of the presets shipped with the package, sorted."""
    return sorted(p.stem for p in PRESETS_DIR.glob(f"*{PRESET_SUFFIX}"))


def preset_path(name: str) -> Path:
    """The YAML file of preset ``name`` (e.g. ``"quickstart"``).

    Raises:
        SpecError: no such preset; the message lists them.
    """
    path = PRESETS_DIR / f"{name}{PRESET_SUFFIX}"
    if name not in list_presets():
        raise SpecError(UNKNOWN_PRESET.format(name=name, presets=", ".join(list_presets())))
    return path


def load_spec(source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()) -> SweepSpec:
    """Load and validate a sweep spec.

    Args:
        source: a YAML file path, a preset name (see :func:`list_presets`;
            an existing file of that name wins), or an already parsed mapping.
        overrides: ``KEY.PATH=VALUE`` texts applied before validation (the
            CLI's ``--set``).

    Raises:
        SpecError: the file is missing or not YAML, or the spec is invalid;
            every problem is named with its key path (and line in the file).
    """
    raw, origin, lines = _read_source(source)
    overrides = list(overrides)
    if overrides:
        if not isinstance(raw, Mapping):
            return build_spec(raw, origin, lines)
        raw = apply_overrides(raw, overrides)
    return build_spec(raw, origin, lines, overridden=overrides)


def train_config_from_spec(spec: SweepSpec) -> dict[str, Any]:
    """One concrete training config from a spec: :meth:`SweepSpec.base_config`
    (each distribution at its representative value), for ``regtune train``."""
    return spec.base_config()


def load_train_config(
    source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """One concrete training config from a sweep spec or a TrainConfig YAML.

    A mapping whose keys are all TrainConfig keys (dataset, model, training,
    penalties) is a training config; anything else is read as a sweep spec
    and reduced with :func:`train_config_from_spec`. Overrides apply first.

    Returns:
        The validated config as a plain dict, holding only the keys given
        (TrainConfig fills in the rest).

    Raises:
        SpecError: naming every bad key path.
    """
    raw, origin, lines = _read_source(source)
    overrides = list(overrides)
    if isinstance(raw, Mapping) and set(raw) <= set(TRAIN_KEYS):
        config = parse_train_config(apply_overrides(raw, overrides))
        return config.model_dump(exclude_unset=True)
    if overrides and isinstance(raw, Mapping):
        raw = apply_overrides(raw, overrides)
    return train_config_from_spec(build_spec(raw, origin, lines, overridden=overrides))


def _read_source(source: str | Path | Mapping[str, Any]) -> tuple[Any, str, dict[str, int]]:
    """(parsed data, origin for messages, key path -> line)."""
    if not isinstance(source, str | Path):
        return source, "<mapping>", {}
    path = Path(source)
    if not path.is_file():
        if isinstance(source, str) and source in list_presets():
            path = preset_path(source)
        else:
            presets = ", ".join(list_presets())
            raise SpecError(NO_SUCH_SOURCE.format(source=str(source), presets=presets))
    data, lines = _read_yaml(path)
    return data, str(path), lines


def _read_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """Parse a YAML file with ``yaml.safe_load``; map its key paths to lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(UNREADABLE.format(file=path, reason=exc)) from exc
    try:
        data = yaml.safe_load(text)
        # compose() builds only the node tree (no objects): it gives the line of
        # each key and catches duplicate keys, which safe_load silently drops.
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        message = YAML_SYNTAX.format(file=path, line=line, column=column, problem=problem)
        raise SpecError(message) from exc
    if data is None:
        raise SpecError(YAML_EMPTY.format(file=path, keys=", ".join(SPEC_KEYS)))
    lines: dict[str, int] = {}
    _index_lines(root, (), lines, path, set())
    return data, lines


def _index_lines(
    node: yaml.Node | None, path: KeyPath, lines: dict[str, int], file: Path, seen: set[int]
) -> None:
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first and key != "<<":
                raise SpecError(
                    YAML_DUPLICATE_KEY.format(file=file, line=line, key=key, first=first[key])
                )
            first[key] = line
            lines[dotted((*path, key))] = line
            _index_lines(value_node, (*path, key), lines, file, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[dotted((*path, str(index)))] = item.start_mark.line + 1
            _index_lines(item, (*path, str(index)), lines, file, seen)
