"""The distributions a sweep spec samples from: parsed from YAML, pure, no Ray.

In a spec, a value is either fixed or a one-key mapping that names a
distribution::

    uniform: [low, high]          float in [low, high)
    loguniform: [low, high]       float, uniform in log space; 0 < low < high
    quniform: [low, high, q]      a multiple of q in [low, high]; low, high multiples of q
    randint: [low, high]          integer in [low, high): high is exclusive, like tune.randint
    choice: [a, b, ...]           one of the values, drawn by the searcher
    grid: [a, b, ...]             every value, enumerated (a grid search)

Anything else is a fixed value. Bounds may be written ``1e-4``: YAML 1.1 reads
that as a string, so numeric strings are accepted as numbers here.

Every problem is reported as ``<path>.<kind>: <what is wrong>``, e.g.
``penalties.l2.loguniform: low must be > 0 (got -1.0)``.

The functions at the end walk and rewrite config trees (nested mappings)
that hold :class:`Distribution` objects in place of sampled values.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from regtune.errors import ROOT, Problem, SpecError

__all__ = [
    "DISTRIBUTION_KINDS",
    "LISTED_KINDS",
    "Choice",
    "Distribution",
    "Grid",
    "KeyPath",
    "LogUniform",
    "QUniform",
    "RandInt",
    "Uniform",
    "find_distribution",
    "grid_combinations",
    "is_distribution",
    "iter_distributions",
    "iter_fixed",
    "parse_distribution",
    "repeated_value",
    "set_path",
    "substitute",
    "suggest_kind",
    "to_yaml_tree",
    "without_distributions",
]

#: The argument shape of each distribution, as shown in error messages.
FORMS: dict[str, str] = {
    "uniform": "[low, high]",
    "loguniform": "[low, high] with 0 < low < high",
    "quniform": "[low, high, q]",
    "randint": "[low, high] of integers, high exclusive",
    "choice": "[value, ...]",
    "grid": "[value, ...]",
}

#: Names of the distributions, in the order the docs list them.
DISTRIBUTION_KINDS: tuple[str, ...] = tuple(FORMS)

# A non-round point inside a continuous range: a key that takes only integers
# passes at integral endpoints and midpoints, and fails here, which is what a
# sampled float would do in a trial.
INTERIOR_FRACTION = 0.381966

# How close a misspelt key must be to a distribution name to be suggested.
SUGGEST_CUTOFF = 0.75

# Digits kept when snapping to a multiple of q, so 3 * 0.1 prints as 0.3.
SNAP_DIGITS = 12

NOT_A_LIST = "{kind} takes a list {form}; got {got!r}"
WRONG_LENGTH = "{kind} takes {form}; got {n} value(s)"
NOT_A_NUMBER = "{what} must be a number (got {got!r})"
NOT_AN_INTEGER = "{what} must be an integer (got {got!r})"
NOT_FINITE = "{what} must be finite (got {got!r})"
EMPTY_RANGE = "low must be < high (got low={low!r}, high={high!r})"
RANDINT_ONE_VALUE = (
    "high is exclusive, so [{low}, {high}] holds a single value; "
    "write the value itself, or raise high above {low_plus_one}"
)
LOG_LOW = "low must be > 0 (got {low!r}); loguniform spans orders of magnitude of positive values"
Q_NOT_POSITIVE = "q must be > 0 (got {q!r})"
Q_NOT_DIVIDING = "low and high must be multiples of q (got low={low!r}, high={high!r}, q={q!r})"
NO_VALUES = "needs at least one value; got an empty list"
REPEATED = {
    "choice": (
        "{value!r} is listed twice (values {first} and {index}): a choice would draw it more "
        "often than the others; list each value once"
    ),
    "grid": (
        "{value!r} is listed twice (values {first} and {index}): the grid would run every "
        "combination holding it twice; list each value once"
    ),
}
NESTED = (
    "values cannot contain distributions (value {index} holds {inner!r}); "
    "write each combination out as a fixed value"
)


class Distribution(ABC):
    """A sampled value of a spec. Subclasses are frozen dataclasses."""

    kind: ClassVar[str]

    @abstractmethod
    def args(self) -> list[Any]:
        """The arguments as written in YAML, e.g. ``[1e-6, 1e-1]``."""

    @abstractmethod
    def representative(self) -> Any:
        """One value to train with when a single config is needed.

        Fixed rule: grid and choice take their first value, uniform the
        arithmetic midpoint, loguniform the geometric midpoint, quniform the
        midpoint snapped to a multiple of q, randint the middle integer.
        """

    @abstractmethod
    def probe_values(self) -> tuple[Any, ...]:
        """Values that cover what sampling can produce: both ends, an
        interior point, or every listed value. A spec is accepted only if the
        trainable accepts each of them."""

    def to_yaml(self) -> dict[str, list[Any]]:
        """The one-key mapping this distribution was parsed from."""
        return {self.kind: self.args()}


@dataclass(frozen=True)
class Uniform(Distribution):
    """Float drawn uniformly from ``[low, high)``."""

    low: float
    high: float
    kind: ClassVar[str] = "uniform"

    def args(self) -> list[Any]:
        return [self.low, self.high]

    def representative(self) -> float:
        return (self.low + self.high) / 2

    def probe_values(self) -> tuple[Any, ...]:
        inner = self.low + (self.high - self.low) * INTERIOR_FRACTION
        return (self.low, inner, self.high)


@dataclass(frozen=True)
class LogUniform(Distribution):
    """Float whose logarithm is uniform on ``[log low, log high)``."""

    low: float
    high: float
    kind: ClassVar[str] = "loguniform"

    def args(self) -> list[Any]:
        return [self.low, self.high]

    def representative(self) -> float:
        return math.sqrt(self.low * self.high)

    def probe_values(self) -> tuple[Any, ...]:
        log_low, log_high = math.log(self.low), math.log(self.high)
        inner = math.exp(log_low + (log_high - log_low) * INTERIOR_FRACTION)
        return (self.low, inner, self.high)


@dataclass(frozen=True)
class QUniform(Distribution):
    """A multiple of ``q`` in ``[low, high]`` (both ends multiples of ``q``)."""

    low: float
    high: float
    q: float
    kind: ClassVar[str] = "quniform"

    def args(self) -> list[Any]:
        return [self.low, self.high, self.q]

    def representative(self) -> float:
        return min(max(_snap((self.low + self.high) / 2, self.q), self.low), self.high)

    def probe_values(self) -> tuple[Any, ...]:
        second = _snap(self.low + self.q, self.q)
        return (self.low, second, self.high) if second < self.high else (self.low, self.high)


@dataclass(frozen=True)
class RandInt(Distribution):
    """Integer drawn uniformly from ``[low, high)`` (high exclusive)."""

    low: int
    high: int
    kind: ClassVar[str] = "randint"

    def args(self) -> list[Any]:
        return [self.low, self.high]

    def representative(self) -> int:
        return (self.low + self.high - 1) // 2

    def probe_values(self) -> tuple[Any, ...]:
        return (self.low, self.high - 1)


@dataclass(frozen=True)
class Choice(Distribution):
    """One of ``options``, drawn by the searcher."""

    options: tuple[Any, ...]
    kind: ClassVar[str] = "choice"

    def args(self) -> list[Any]:
        return list(self.options)

    def representative(self) -> Any:
        return self.options[0]

    def probe_values(self) -> tuple[Any, ...]:
        return self.options


@dataclass(frozen=True)
class Grid(Distribution):
    """Every one of ``values``, each in its own trial (grid search)."""

    values: tuple[Any, ...]
    kind: ClassVar[str] = "grid"

    def args(self) -> list[Any]:
        return list(self.values)

    def representative(self) -> Any:
        return self.values[0]

    def probe_values(self) -> tuple[Any, ...]:
        return self.values


def grid_combinations(dists: Iterable[Distribution]) -> int:
    """How many combinations the grids among ``dists`` make (1 without one):
    each is a trial of its own, ``budget.samples`` times."""
    return math.prod(len(d.values) for d in dists if isinstance(d, Grid))


KeyPath: TypeAlias = tuple[str, ...]


def is_distribution(value: Any) -> bool:
    """Whether a raw YAML value is a one-key mapping naming a distribution."""
    return (
        isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in DISTRIBUTION_KINDS
    )


def suggest_kind(key: Any) -> str | None:
    """The distribution name ``key`` is probably a misspelling of, if any."""
    if not isinstance(key, str) or key in DISTRIBUTION_KINDS:
        return None
    close = difflib.get_close_matches(key, DISTRIBUTION_KINDS, n=1, cutoff=SUGGEST_CUTOFF)
    return close[0] if close else None


def parse_distribution(
    raw: Mapping[str, Any], path: str = "", *, stored: bool = False
) -> Distribution:
    """Parse a one-key mapping such as ``{loguniform: [1e-6, 1e-1]}``.

    Args:
        raw: a mapping for which :func:`is_distribution` is true.
        path: the dotted key path of the value, used in messages.
        stored: ``raw`` is from a spec a sweep ran, read as it ran: a choice
            or grid listing a value twice (refused in new input) is kept.

    Raises:
        SpecError: one line per problem, each ``<path>.<kind>: <problem>``
            (``exc.problems`` holds them).
    """
    if not is_distribution(raw):
        problem = Problem(
            path or ROOT, f"not a distribution; expected one key of {', '.join(DISTRIBUTION_KINDS)}"
        )
        raise SpecError(str(problem), [problem])
    kind, args = next(iter(raw.items()))
    where = f"{path}.{kind}" if path else kind
    problems: list[str] = []
    if kind in LISTED_KINDS:
        dist = _parse_listed(kind, args, problems, repeats=stored)
    else:
        dist = _PARSERS[kind](args, problems)
    if problems or dist is None:
        found = [Problem(where, p) for p in problems]
        raise SpecError("\n".join(map(str, found)), found)
    return dist


def _snap(value: float, q: float) -> float:
    return float(f"{round(value / q) * q:.{SNAP_DIGITS}g}")


def _arguments(kind: str, args: Any, n: int | None, problems: list[str]) -> list[Any] | None:
    if not isinstance(args, list):
        problems.append(NOT_A_LIST.format(kind=kind, form=FORMS[kind], got=args))
        return None
    if n is not None and len(args) != n:
        problems.append(WRONG_LENGTH.format(kind=kind, form=FORMS[kind], n=len(args)))
        return None
    return args


def _number(what: str, value: Any, problems: list[str]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        problems.append(NOT_A_NUMBER.format(what=what, got=value))
        return None
    try:
        number = float(value)
    except ValueError:
        problems.append(NOT_A_NUMBER.format(what=what, got=value))
        return None
    if not math.isfinite(number):
        problems.append(NOT_FINITE.format(what=what, got=value))
        return None
    return number


def _numbers(kind: str, args: Any, n: int, problems: list[str]) -> list[float] | None:
    values = _arguments(kind, args, n, problems)
    if values is None:
        return None
    names = ("low", "high", "q")[:n]
    numbers = [_number(name, v, problems) for name, v in zip(names, values, strict=True)]
    checked = [x for x in numbers if x is not None]
    return checked if len(checked) == n else None


def _parse_uniform(args: Any, problems: list[str]) -> Distribution | None:
    bounds = _numbers("uniform", args, 2, problems)
    if bounds is None:
        return None
    low, high = bounds
    if low >= high:
        problems.append(EMPTY_RANGE.format(low=low, high=high))
        return None
    return Uniform(low, high)


def _parse_loguniform(args: Any, problems: list[str]) -> Distribution | None:
    bounds = _numbers("loguniform", args, 2, problems)
    if bounds is None:
        return None
    low, high = bounds
    if low <= 0:
        problems.append(LOG_LOW.format(low=low))
        return None
    if low >= high:
        problems.append(EMPTY_RANGE.format(low=low, high=high))
        return None
    return LogUniform(low, high)


def _parse_quniform(args: Any, problems: list[str]) -> Distribution | None:
    numbers = _numbers("quniform", args, 3, problems)
    if numbers is None:
        return None
    low, high, q = numbers
    if q <= 0:
        problems.append(Q_NOT_POSITIVE.format(q=q))
        return None
    if low >= high:
        problems.append(EMPTY_RANGE.format(low=low, high=high))
        return None
    # Ray's Float.quantized() refuses bounds off the grid, with this same test.
    if not all(math.isclose(b / q, round(b / q)) for b in (low, high)):
        problems.append(Q_NOT_DIVIDING.format(low=low, high=high, q=q))
        return None
    return QUniform(low, high, q)


def _integer(what: str, value: Any, problems: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(NOT_AN_INTEGER.format(what=what, got=value))
        return None
    return value


def _parse_randint(args: Any, problems: list[str]) -> Distribution | None:
    values = _arguments("randint", args, 2, problems)
    if values is None:
        return None
    low, high = _integer("low", values[0], problems), _integer("high", values[1], problems)
    if low is None or high is None:
        return None
    if low >= high:
        problems.append(EMPTY_RANGE.format(low=low, high=high))
        return None
    if high == low + 1:
        # hyperopt cannot draw from a one-value range, and it is a fixed value anyway.
        problems.append(RANDINT_ONE_VALUE.format(low=low, high=high, low_plus_one=low + 1))
        return None
    return RandInt(low, high)


def _options(
    kind: str, args: Any, problems: list[str], *, repeats: bool = False
) -> tuple[Any, ...] | None:
    values = _arguments(kind, args, None, problems)
    if values is None:
        return None
    if not values:
        problems.append(NO_VALUES)
        return None
    for index, value in enumerate(values):
        inner = find_distribution(value)
        if inner is not None:
            problems.append(NESTED.format(index=index, inner=inner))
            return None
    message = None if repeats else repeated_value(kind, values)
    if message is not None:
        problems.append(message)
        return None
    return tuple(values)


def repeated_value(kind: str, values: Iterable[Any]) -> str | None:
    """Why a choice or grid lists a value twice (the first repeat), else None.

    Values are compared as YAML gives them: ``1`` and ``1.0`` are one value,
    ``true`` and ``1`` are not (a boolean is never taken as a number).
    """
    first: dict[Any, int] = {}
    for index, value in enumerate(values):
        key = _identity(value)
        if key in first:
            return REPEATED[kind].format(index=index, value=value, first=first[key])
        first[key] = index
    return None


def _identity(value: Any) -> Any:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float | str):
        return ("scalar", value)
    if value is None:
        return ("none",)
    return ("other", json.dumps(value, sort_keys=True, default=repr))


def _parse_listed(
    kind: str, args: Any, problems: list[str], *, repeats: bool = False
) -> Distribution | None:
    """A choice or grid (``kind``); ``repeats``: a value may be listed twice."""
    values = _options(kind, args, problems, repeats=repeats)
    if values is None:
        return None
    return Choice(values) if kind == "choice" else Grid(values)


def _parse_choice(args: Any, problems: list[str]) -> Distribution | None:
    return _parse_listed("choice", args, problems)


def _parse_grid(args: Any, problems: list[str]) -> Distribution | None:
    return _parse_listed("grid", args, problems)


#: The distributions that list their values (which new input may not repeat).
LISTED_KINDS = ("choice", "grid")

_PARSERS = {
    "uniform": _parse_uniform,
    "loguniform": _parse_loguniform,
    "quniform": _parse_quniform,
    "randint": _parse_randint,
    "choice": _parse_choice,
    "grid": _parse_grid,
}


# -- config trees holding Distribution objects ---------------------------------


def find_distribution(value: Any) -> Any:
    """The first raw distribution mapping inside ``value`` (at any depth), or None."""
    if is_distribution(value):
        return value
    if isinstance(value, list | Mapping):
        for item in value.values() if isinstance(value, Mapping) else value:
            found = find_distribution(item)
            if found is not None:
                return found
    return None


def iter_distributions(node: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Distribution]]:
    """``(key path, Distribution)`` for each distribution in a nested mapping."""
    if isinstance(node, Distribution):
        yield path, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from iter_distributions(value, (*path, key))


def iter_fixed(node: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """``(key path, value)`` for each fixed value (not a mapping, not a distribution)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from iter_fixed(value, (*path, key))
    elif not isinstance(node, Distribution) and path:
        yield path, node


def without_distributions(node: Any) -> Any:
    """A deep copy of a nested mapping with every distribution left out."""
    if isinstance(node, Mapping):
        return {
            k: without_distributions(v) for k, v in node.items() if not isinstance(v, Distribution)
        }
    return copy.deepcopy(node)


def set_path(tree: dict[str, Any], path: KeyPath, value: Any) -> None:
    """Set ``tree[path[0]][path[1]]... = value``, creating mappings on the way."""
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def substitute(tree: Mapping[str, Any], values: Mapping[KeyPath, Any]) -> dict[str, Any]:
    """A deep copy of ``tree`` with the value at each key path replaced."""
    out: dict[str, Any] = copy.deepcopy(dict(tree))
    for path, value in values.items():
        set_path(out, path, copy.deepcopy(value))
    return out


def to_yaml_tree(node: Any) -> Any:
    """A deep copy with each distribution written back as its YAML mapping."""
    if isinstance(node, Distribution):
        return copy.deepcopy(node.to_yaml())
    if isinstance(node, Mapping):
        return {k: to_yaml_tree(v) for k, v in node.items()}
    return copy.deepcopy(node)
