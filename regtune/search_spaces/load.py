"""Read sweep specs: from YAML files (with a line index), presets or mappings.

A spec source is a YAML file path, the name of a preset shipped with the
package (see :func:`list_presets`), or an already parsed mapping. Problems
point at the YAML line of their key path; YAML syntax errors and keys given
twice in one mapping (which ``yaml.safe_load`` silently drops) are reported
with theirs.

A relative ``dataset.path`` in a file is relative to that file's folder (so
a spec and its data travel together); one given with ``--set`` is relative to
the working directory, like any path typed in a shell. Both are made
absolute here. A csv/parquet file that is missing or lacks a declared column
is reported while the spec is validated (``check_data``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from regtune.errors import Problem, SpecError, did_you_mean, shown
from regtune.search_spaces.distributions import KeyPath, is_distribution, parse_distribution
from regtune.search_spaces.overrides import apply_overrides
from regtune.search_spaces.problems import dotted, format_problems, in_line_order
from regtune.search_spaces.sections import SPEC_KEYS, TRAIN_KEYS
from regtune.search_spaces.spec import SweepSpec, build_spec
from regtune.search_spaces.validate import UNKNOWN_KEY, data_file_problems
from regtune.search_spaces.yaml_limits import compose
from regtune.trainables.config import idle_keys, parse_train_config
from regtune.trainables.paths import NoHomeError, expand_user

__all__ = [
    "data_path_as_written",
    "list_presets",
    "load_spec",
    "load_train_config",
    "preset_descriptions",
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
NO_SUCH_SOURCE = "{source!r} is neither a spec file nor a preset{hint}; presets: {presets}"
NO_SUCH_FILE = (
    "spec file {path} does not exist (from {source!r}); give an existing YAML file "
    "or a preset name: {presets}"
)
NOT_A_FILE = "spec {path} is not a file (from {source!r}); give a YAML file or a preset name"
#: Endings that make a source a file the user meant, never a preset name.
FILE_SUFFIXES = (".yaml", ".yml")
UNKNOWN_PRESET = "unknown preset {name!r}{hint}; presets: {presets}"
INVALID_TRAIN_CONFIG = "invalid training config {origin}:"
TRAIN_DISTRIBUTION = (
    "a training config takes one value here, not a distribution ({kind}): write one "
    "value{example}, or make the file a sweep spec (add a name, and budget.max_epochs in "
    "place of training.epochs) to search it with regtune sweep"
)
TRAIN_DISTRIBUTION_EXAMPLE = ", e.g. {value} (what regtune train takes for it from a sweep spec)"
# How close a misspelt preset name must be to a real one to be suggested.
PRESET_SUGGEST_CUTOFF = 0.6


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
        presets = ", ".join(list_presets())
        raise SpecError(UNKNOWN_PRESET.format(name=name, hint=_suggest(name), presets=presets))
    return path


def preset_descriptions() -> dict[str, str]:
    """Each preset's name and its one-line ``description``, sorted by name."""
    out = {}
    for name in list_presets():
        data, _ = _read_yaml(preset_path(name))
        description = data.get("description", "") if isinstance(data, Mapping) else ""
        out[name] = str(description)
    return out


def _suggest(name: str) -> str:
    return did_you_mean(name, list_presets(), cutoff=PRESET_SUGGEST_CUTOFF)


def load_spec(
    source: str | Path | Mapping[str, Any],
    overrides: Iterable[str] = (),
    *,
    check_data: bool = True,
    stored: bool = False,
) -> SweepSpec:
    """Load and validate a sweep spec.

    Args:
        source: a YAML file path, a preset name (see :func:`list_presets`;
            an existing file of that name wins), or an already parsed mapping.
        overrides: ``KEY.PATH=VALUE`` texts applied before validation (the
            CLI's ``--set``).
        check_data: check that a csv/parquet ``dataset.path`` exists and has
            the declared columns (off for a spec whose data lives only where
            it will run, e.g. on a cluster).
        stored: ``source`` is a spec a sweep ran (its ``results/spec.json``),
            read back as it ran: the rules that guard only new input (a
            scheduler that could stop no trial early, a value listed twice in
            a choice or grid, a searcher seed out of range, a GPU no trial
            uses, PBT factors all 1.0) do not apply; see
            :func:`~regtune.search_spaces.validate.check_spec`.

    Raises:
        SpecError: the file is missing or not YAML, or the spec is invalid;
            every problem is named with its key path (and line in the file,
            or the ``--set`` option that gave the value).
    """
    raw, origin, lines = _read_source(source)
    overrides = list(overrides)
    if not isinstance(raw, Mapping):
        return build_spec(raw, origin, lines, check_data=check_data, stored=stored)
    raw = _resolve_data_path(raw, _folder_of(source), overrides)
    return build_spec(
        raw, origin, lines, overridden=overrides, check_data=check_data, stored=stored
    )


def train_config_from_spec(spec: SweepSpec) -> dict[str, Any]:
    """One concrete training config from a spec: :meth:`SweepSpec.base_config`
    (each distribution at its representative value), for ``regtune train``."""
    return spec.base_config()


#: Keys only a sweep spec has: a file with none of them is a training config.
#: ``description`` is not one (a training config may be given one by mistake,
#: and is then told it takes dataset, model, training and penalties).
SWEEP_ONLY_KEYS = frozenset(SPEC_KEYS) - frozenset(TRAIN_KEYS) - {"description"}


def load_train_config(
    source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """One concrete training config from a sweep spec or a TrainConfig YAML.

    A mapping without any sweep-only key (:data:`SWEEP_ONLY_KEYS`: name,
    objectives, scheduler, ...) is a training config, whose unknown keys
    (``description`` among them) are named with the training config's keys;
    anything else is read as a sweep spec and reduced with
    :func:`train_config_from_spec`. Overrides apply first;
    they may fix every sampled value (the ``--set`` line that reproduces one
    trial): a spec trained once needs nothing to sample, and its searcher and
    PBT settings, and its scheduler's epochs against budget.max_epochs
    (``grace_period``, ``perturbation_interval``), are not checked.

    Returns:
        The validated config as a plain dict, holding only the keys given
        (TrainConfig fills in the rest).

    Raises:
        SpecError: naming every bad key path.
    """
    raw, origin, lines = _read_source(source)
    overrides = list(overrides)
    if not isinstance(raw, Mapping):
        return train_config_from_spec(build_spec(raw, origin, lines, one_run=True))
    raw = _resolve_data_path(raw, _folder_of(source), overrides)
    if not set(map(str, raw)) & SWEEP_ONLY_KEYS:
        unknown = [
            Problem(
                str(key),
                UNKNOWN_KEY.format(key=shown(key), allowed=", ".join(TRAIN_KEYS))
                + did_you_mean(str(key), list(TRAIN_KEYS)),
            )
            for key in raw
            if key not in TRAIN_KEYS
        ]
        fixed, sampled = _without_distributions(
            {k: v for k, v in raw.items() if k in TRAIN_KEYS}, ()
        )
        try:
            config = parse_train_config(fixed)
        except SpecError as exc:
            problems = list(exc.problems)
            if not problems and not unknown and not sampled:
                raise
        else:
            # Every problem at once: idle keys and the data file.
            problems = [*idle_keys(config), *data_file_problems(config.dataset)]
        problems = [*unknown, *sampled, *problems]
        if problems:
            problems = in_line_order(problems, lines, overrides)
            message = format_problems(problems, origin, lines, overrides)
            header = INVALID_TRAIN_CONFIG.format(origin=origin)
            message = "\n".join([header, *message.splitlines()[1:]])
            raise SpecError(message, problems)
        return config.model_dump(exclude_unset=True)
    # One run uses no scheduler: build_spec(one_run=True) leaves out the rules
    # between its epochs and budget.max_epochs (``regtune train adversarial
    # --set budget.max_epochs=1`` trains one epoch whatever its grace_period).
    spec = build_spec(raw, origin, lines, overridden=overrides, one_run=True)
    return train_config_from_spec(spec)


def _without_distributions(node: Any, path: KeyPath) -> tuple[Any, list[Problem]]:
    """A training config's ``node`` with each distribution mapping replaced by
    its representative value (so it is not refused a second time as a wrong
    type), and a problem for each: a training config takes fixed values."""
    if is_distribution(node):
        try:
            value = parse_distribution(node, dotted(path)).representative()
        except SpecError:
            value, example = None, ""
        else:
            shown_value = f"{value:.4g}" if isinstance(value, float) else repr(value)
            example = TRAIN_DISTRIBUTION_EXAMPLE.format(value=shown_value)
        kind = next(iter(node))
        message = TRAIN_DISTRIBUTION.format(kind=kind, example=example)
        return value, [Problem(dotted(path), message)]
    if not isinstance(node, Mapping):
        return node, []
    out: dict[Any, Any] = {}
    problems: list[Problem] = []
    for key, value in node.items():
        fixed, found = _without_distributions(value, (*path, str(key)))
        problems += found
        if fixed is not None or not found:
            out[key] = fixed
    return out, problems


def data_path_as_written(
    source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()
) -> str | None:
    """``dataset.path`` as the spec (or an override) writes it, before it is
    made absolute; None without one. Whoever ships a spec elsewhere (a Ray
    job) needs to know whether the path is relative, hence travels with it.

    Raises:
        SpecError: the source cannot be read, or an override is malformed.
    """
    raw, _, _ = _read_source(source)
    if not isinstance(raw, Mapping):
        return None
    overrides = list(overrides)
    dataset = (apply_overrides(raw, overrides) if overrides else raw).get("dataset")
    path = dataset.get("path") if isinstance(dataset, Mapping) else None
    return path if isinstance(path, str) else None


def _folder_of(source: str | Path | Mapping[str, Any]) -> Path | None:
    """The folder of a spec file (None for a mapping; a preset's is the presets folder)."""
    if not isinstance(source, str | Path):
        return None
    path = Path(source)
    if path.is_file():
        return path.resolve().parent
    return PRESETS_DIR


def _resolve_data_path(
    raw: Mapping[str, Any], folder: Path | None, overrides: list[str]
) -> dict[str, Any]:
    """``raw`` with overrides applied and a relative ``dataset.path`` made
    absolute: against ``folder`` when the file gave it, against the working
    directory when ``--set`` did."""
    out = dict(raw)
    if folder is not None:
        out = _absolute_data_path(out, folder)
    if overrides:
        out = _absolute_data_path(apply_overrides(out, overrides), Path.cwd())
    return out


def _absolute_data_path(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    dataset = raw.get("dataset")
    path = dataset.get("path") if isinstance(dataset, Mapping) else None
    if not isinstance(path, str) or "://" in path:
        return raw
    try:
        expanded = expand_user(path)
    except NoHomeError:  # '~user' naming no user: the data-file check says so
        return raw
    if expanded.is_absolute():
        return raw
    return {**raw, "dataset": {**dataset, "path": str(folder / expanded)}}  # type: ignore[dict-item]


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
            if path.exists():
                raise SpecError(NOT_A_FILE.format(path=path.resolve(), source=str(source)))
            if _names_a_file(str(source)):
                where = path.expanduser().resolve()
                raise SpecError(
                    NO_SUCH_FILE.format(path=where, source=str(source), presets=presets)
                )
            hint = _suggest(str(source))
            raise SpecError(NO_SUCH_SOURCE.format(source=str(source), hint=hint, presets=presets))
    data, lines = _read_yaml(path)
    return data, str(path), lines


def _names_a_file(source: str) -> bool:
    """A name ending ``.yaml``/``.yml`` or holding a path separator is a file the
    user meant, not a preset name."""
    return source.lower().endswith(FILE_SUFFIXES) or "/" in source or os.sep in source


def _read_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """Parse a YAML file with ``yaml.safe_load``; map its key paths to lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(UNREADABLE.format(file=path, reason=exc)) from exc
    try:
        # compose() builds only the node tree (no objects): it gives the line of
        # each key and catches duplicate keys, which safe_load silently drops;
        # its nesting and size are checked before anything walks it (yaml_limits).
        root = compose(text, str(path))
        data = yaml.safe_load(text)
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
