"""Which parameters a sweep varied, their ranges and scales, and what raising them does.

From the spec when it is known (``spec.iter_distributions()``: the range and
whether it was log-scaled come from the distribution), otherwise from the data
(a ``config.*`` column with more than one numeric value; log-scaled when all
values are positive and span at least :data:`LOG_SPAN_DECADES` decades).
Seeds (:func:`is_replicate`) are swept too, but for replicates: the analysis
draws no path or heat-map axis for them and gives no range advice on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from regtune.errors import SpecError
from regtune.search_spaces import Choice, Grid, LogUniform, QUniform, RandInt, SweepSpec, Uniform

__all__ = [
    "LOG_SPAN_DECADES",
    "MSG_UNKNOWN_PARAMETER",
    "Role",
    "SweptParameter",
    "find_parameter",
    "is_replicate",
    "role_of",
    "swept_parameters",
]

#: Without a spec, positive values spanning this many decades are shown on a log axis.
LOG_SPAN_DECADES = 2.0

MSG_UNKNOWN_PARAMETER = "{what}: unknown swept parameter {name!r}; swept parameters: {present}"

#: What raising a parameter does to a model:
#: ``regularizer`` more regularization (l2, dropout, label smoothing, fairness strength, ...),
#: ``inverse`` less regularization (max_norm: a larger bound constrains less),
#: ``capacity`` more capacity (width, depth), ``step`` larger optimisation steps (lr),
#: ``other`` nothing the diagnosis can reason about.
Role = Literal["regularizer", "inverse", "capacity", "step", "other"]

_INVERSE = ("penalties.max_norm",)
_CAPACITY = ("model.width", "model.depth")
_STEP = ("training.lr", "training.batch_size")
_REGULARIZER_PREFIXES = ("penalties.", "model.dropout")
# Under penalties but not a strength: a method name, step counts, the attack's step size.
_NOT_STRENGTH = ("penalties.adversarial.steps", "penalties.adversarial.step_size")


def is_replicate(name: str) -> bool:
    """Whether a dotted config path is a seed (``training.seed``, ``dataset.split_seed``,
    any key named ``seed`` or ``*_seed``): its values are replicates of one setting, not
    strengths. A path medians over them; none gets a path, a heat-map axis or range advice."""
    last = name.rpartition(".")[2]
    return last == "seed" or last.endswith("_seed")


def role_of(name: str) -> Role:
    """The :data:`Role` of a dotted config path such as ``penalties.l2``."""
    if name in _INVERSE:
        return "inverse"
    if name in _CAPACITY:
        return "capacity"
    if name in _STEP:
        return "step"
    if name.startswith(_REGULARIZER_PREFIXES) and name not in _NOT_STRENGTH:
        return "regularizer"
    return "other"


@dataclass(frozen=True)
class SweptParameter:
    """One swept parameter: its dotted name, its ``config.*`` column, range and scale."""

    name: str
    kind: str
    low: float | None
    high: float | None
    log: bool
    numeric: bool

    @property
    def column(self) -> str:
        """The epochs/trials column holding it."""
        return f"config.{self.name}"

    @property
    def role(self) -> Role:
        """What raising it does (see :data:`Role`)."""
        return role_of(self.name)

    @property
    def replicate(self) -> bool:
        """Whether it is a seed (see :func:`is_replicate`): swept for replicates, not a strength."""
        return is_replicate(self.name)

    @property
    def is_penalty(self) -> bool:
        """Whether it is a regularization strength (raising or lowering regularizes)."""
        return self.role in ("regularizer", "inverse")


def _numbers(values: Sequence[object]) -> list[float] | None:
    out: list[float] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        out.append(float(value))
    return out


def _log_span(values: Sequence[float]) -> bool:
    positive = [v for v in values if v > 0]
    if not positive or len(positive) < len(values) - 1:
        # Zero is allowed once (an "off" grid point); negatives rule out a log axis.
        return False
    if any(v < 0 for v in values):
        return False
    return math.log10(max(positive) / min(positive)) >= LOG_SPAN_DECADES


def _from_spec(spec: SweepSpec) -> list[SweptParameter]:
    found: list[SweptParameter] = []
    for path, dist in spec.iter_distributions():
        name = ".".join(path)
        if isinstance(dist, LogUniform):
            found.append(SweptParameter(name, dist.kind, dist.low, dist.high, True, True))
        elif isinstance(dist, (Uniform, QUniform)):
            found.append(SweptParameter(name, dist.kind, dist.low, dist.high, False, True))
        elif isinstance(dist, RandInt):
            found.append(
                SweptParameter(name, dist.kind, float(dist.low), float(dist.high - 1), False, True)
            )
        elif isinstance(dist, (Grid, Choice)):
            values = _numbers(list(dist.args()))
            if values is None:
                found.append(SweptParameter(name, dist.kind, None, None, False, False))
            else:
                found.append(
                    SweptParameter(
                        name, dist.kind, min(values), max(values), _log_span(values), True
                    )
                )
    return found


def _from_data(table: pd.DataFrame) -> list[SweptParameter]:
    found: list[SweptParameter] = []
    for column in table.columns:
        if not str(column).startswith("config."):
            continue
        series = table[column]
        if series.nunique(dropna=True) < 2:
            continue
        name = str(column)[len("config.") :]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            values = np.unique(series.dropna().to_numpy(dtype=np.float64))
            found.append(
                SweptParameter(
                    name,
                    "observed",
                    float(values.min()),
                    float(values.max()),
                    _log_span(values.tolist()),
                    True,
                )
            )
        else:
            found.append(SweptParameter(name, "observed", None, None, False, False))
    return found


def swept_parameters(table: pd.DataFrame, spec: SweepSpec | None = None) -> list[SweptParameter]:
    """The swept parameters: from ``spec`` when given, else from ``table``'s ``config.*`` columns.

    Parameters the spec sweeps but the table has no column for are left out
    (a sweep that has not reported yet); penalties come first, then the rest
    in spec (or column) order.
    """
    found = _from_spec(spec) if spec is not None else _from_data(table)
    present = [p for p in found if p.column in table.columns]
    return sorted(present, key=lambda p: (not p.is_penalty, found.index(p)))


def find_parameter(swept: Sequence[SweptParameter], name: str, what: str) -> SweptParameter:
    """The swept parameter called ``name`` (``penalties.l2``, ``l2`` or ``config.penalties.l2``).

    Raises:
        SpecError: no swept parameter has that name; the message lists them.
    """
    bare = name[len("config.") :] if name.startswith("config.") else name
    for parameter in swept:
        if bare == parameter.name or parameter.name.endswith("." + bare):
            return parameter
    present = ", ".join(p.name for p in swept) or "(none)"
    raise SpecError(MSG_UNKNOWN_PARAMETER.format(what=what, name=name, present=present))
