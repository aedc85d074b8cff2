"""Which values of a spec's config tree the trainable rejects.

Each value a distribution can produce (both ends, an interior point, every
listed value), and each pair of such values of two distributions, is
substituted into the config and validated with
:func:`~regtune.trainables.config.parse_train_config`, so no trial receives a
config the trainable rejects (rules over three or more keys at once are
checked only at the representative values, by :func:`check_base_config`).

Pairs of a long list of numbers (more than :data:`PAIR_VALUES` listed values)
are tried at :data:`PAIR_VALUES` of them spread by rank, both ends, zero and
the smallest positive value included, as a continuous range is tried at its
ends and one interior point: a rule between two numbers turns at an end or at
zero, and trying every pair of two 1,000-value grids would validate a
million configs (minutes) before the spec is answered.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from regtune.errors import ROOT, SpecError
from regtune.search_spaces.distributions import (
    LISTED_KINDS,
    Choice,
    Distribution,
    Grid,
    KeyPath,
    iter_distributions,
    iter_fixed,
    repeated_value,
    set_path,
    without_distributions,
)
from regtune.search_spaces.problems import Problem, ProblemLog, dotted
from regtune.trainables.config import TrainConfig, parse_train_config

__all__ = [
    "PAIR_VALUES",
    "check_base_config",
    "pair_values",
    "probe_pairs",
    "probe_space",
    "probe_value",
    "train_problems",
]

SAMPLE_REJECTED = "{kind} can produce {value!r}, which the trainable rejects: {reason}"
PAIR_REJECTED = (
    "{kind} value {value!r} together with {other} = {other_value!r} is rejected by the "
    "trainable: {reason}"
)
BASE_REJECTED = "with every distribution at its representative value: {reason}"

#: Listed numbers beyond this many are tried in pairs at this many of them.
PAIR_VALUES = 16


def probe_space(
    log: ProblemLog,
    space: dict[str, Any],
    dists: dict[KeyPath, Distribution],
    *,
    repeats: bool = False,
) -> list[TrainConfig]:
    """Validate the fixed values, then every value each distribution can
    produce; normalise both in place. Returns the valid configs seen.
    ``repeats``: a choice or grid may list a value twice once read (a stored
    spec's, which ran so)."""
    fixed = without_distributions(space)
    fixed_problems, fixed_config = train_problems(fixed)
    for problem in fixed_problems:
        log.add(problem.path, problem.message)
    seen = [fixed_config] if fixed_config is not None else []
    if fixed_config is not None:
        for path, _ in iter_fixed(space, ()):
            set_path(space, path, _read_back(fixed_config, path))
    valid: list[KeyPath] = []
    for path, dist in dists.items():
        normalised = []
        for value in dist.probe_values():
            config = probe_value(log, fixed, fixed_problems, path, dist, value, SAMPLE_REJECTED)
            if config is not None:
                seen.append(config)
                normalised.append(_read_back(config, path))
        if len(normalised) == len(dist.probe_values()):
            listed = dist.kind in LISTED_KINDS and not repeats
            repeat = repeated_value(dist.kind, normalised) if listed else None
            if repeat is not None:
                # Written apart, equal once read (``"1e-4"`` and ``1.0e-4``).
                log.add((*path, dist.kind), repeat)
                continue
            valid.append(path)
            if isinstance(dist, Choice):
                set_path(space, path, Choice(tuple(normalised)))
            elif isinstance(dist, Grid):
                set_path(space, path, Grid(tuple(normalised)))
    probe_pairs(log, fixed, fixed_problems, valid, dists)
    return seen


def probe_pairs(
    log: ProblemLog,
    fixed: dict[str, Any],
    fixed_problems: list[Problem],
    paths: list[KeyPath],
    dists: Mapping[KeyPath, Distribution],
) -> None:
    """Rules that relate two keys (e.g. attack steps) can reject a pair of
    values each valid alone: try every pair of probe values, and report the
    first rejected pair of each two distributions."""
    for i, first in enumerate(paths):
        for second in paths[i + 1 :]:
            pairs = itertools.product(pair_values(dists[first]), pair_values(dists[second]))
            for a, b in pairs:
                problems, _ = train_problems(_with_values(fixed, {first: a, second: b}))
                new = [p for p in problems if p not in fixed_problems]
                if new:
                    reason = "; ".join(_reason(p, "<root>") for p in new)
                    message = PAIR_REJECTED.format(
                        kind=dists[first].kind,
                        value=a,
                        other=dotted(second),
                        other_value=b,
                        reason=reason,
                    )
                    log.add(first, message)
                    break


def pair_values(dist: Distribution) -> tuple[Any, ...]:
    """The values of ``dist`` tried against each value of another distribution:
    every probe value, but of more than :data:`PAIR_VALUES` listed numbers only
    :data:`PAIR_VALUES` spread evenly by rank (both ends kept), with zero and
    the smallest positive value when listed."""
    values = dist.probe_values()
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if len(values) <= PAIR_VALUES or not numeric:
        return values
    ranked = sorted(set(values))
    last = len(ranked) - 1
    picked = {ranked[round(i * last / (PAIR_VALUES - 1))] for i in range(PAIR_VALUES)}
    positive = [v for v in ranked if v > 0]
    picked.update([v for v in ranked if v == 0] + positive[:1])
    return tuple(sorted(picked))


def probe_value(
    log: ProblemLog,
    fixed: dict[str, Any],
    fixed_problems: list[Problem],
    path: KeyPath,
    dist: Distribution,
    value: Any,
    template: str,
    **extra: Any,
) -> TrainConfig | None:
    """Validate ``fixed`` with ``value`` at ``path``; each problem beyond
    ``fixed_problems`` is logged at ``path`` with ``template`` (formatted with
    kind, value, reason and ``extra``). Returns the config, or ``None`` if rejected."""
    problems, config = train_problems(_with_values(fixed, {path: value}))
    new = [p for p in problems if p not in fixed_problems]
    for problem in new:
        reason = _reason(problem, dotted(path))
        log.add(path, template.format(kind=dist.kind, value=value, reason=reason, **extra))
    return config if not new else None


def check_base_config(log: ProblemLog, space: dict[str, Any]) -> None:
    """Validate the config with every distribution at its representative value."""
    values = {path: dist.representative() for path, dist in iter_distributions(space, ())}
    problems, _ = train_problems(_with_values(space, values))
    for problem in problems:
        log.add(problem.path, BASE_REJECTED.format(reason=problem.message))


def train_problems(tree: Mapping[str, Any]) -> tuple[list[Problem], TrainConfig | None]:
    """Validate a config tree with the trainable's own parser."""
    try:
        return [], parse_train_config(tree)
    except SpecError as exc:
        return list(exc.problems) or [Problem(ROOT, str(exc))], None


def _with_values(tree: Mapping[str, Any], values: Mapping[KeyPath, Any]) -> dict[str, Any]:
    """``tree`` with the value at each key path replaced, for validation only.

    Only the mappings on the way to each path are copied; the rest is shared
    with ``tree`` (the trainable's parser reads its input and never changes
    it). A deep copy of the whole tree for each of the thousands of pairs
    probed was most of a large spec's validation time.
    """
    out = dict(tree)
    for path, value in values.items():
        node = out
        for key in path[:-1]:
            child = node.get(key)
            node[key] = dict(child) if isinstance(child, Mapping) else {}
            node = node[key]
        node[path[-1]] = value
    return out


def _reason(problem: Problem, where: str) -> str:
    # Rules over several keys report the path of the section holding them
    # (or none): the message names the keys, so the path adds nothing.
    own = problem.path in (where, ROOT) or where.startswith(f"{problem.path}.")
    return problem.message if own else f"{problem.path}: {problem.message}"


def _read_back(config: BaseModel, path: KeyPath) -> Any:
    """The value at ``path`` as the trainable parsed it (``"1e-4"`` -> 0.0001)."""
    node: Any = config
    for key in path:
        node = getattr(node, key)
    return node.model_dump(exclude_unset=True) if isinstance(node, BaseModel) else node
