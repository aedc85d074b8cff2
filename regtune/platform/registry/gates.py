"""Promotion gates: ``"gap<=0.05"`` parsed, checked against a version's metrics.

A gate is ``METRIC OP NUMBER`` with ``OP`` one of ``<=``, ``<``, ``>=``, ``>``
(spaces allowed around it). ``METRIC`` is the text before the operator that
precedes the number, stripped, so it may be any name a version holds, a group
value with spaces, '+' or non-ASCII letters included (``test_acc.group one``,
``test_tpr_35+``); one ending in ``=`` (``gap=<0.1``) is a misspelt operator.
Metric names are those of :mod:`regtune.platform.registry.evaluation`
(``gap``, ``test_acc``, ``test_dp_diff``, ``test_acc.Female``, ...). A metric
that is NaN fails its gate; a metric the version does not have is an error,
not a failure.

:func:`check_gate_names` refuses a gate on a name no version can have (with
"did you mean") before anything is loaded: a typo costs no ensemble build.
Names that depend on the dataset (a group, a binary task) pass it and are
checked against the version's metrics by :func:`check_gates`.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from regtune.errors import SpecError, did_you_mean

__all__ = [
    "GROUP_PATTERNS",
    "KNOWN_METRICS",
    "OPERATORS",
    "Gate",
    "GateResult",
    "check_gate_names",
    "check_gates",
    "failed",
    "parse_gate",
    "parse_gates",
]

#: The comparison operators a gate may use.
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}

#: METRIC is all the text before the operator that precedes the number
#: (stripped): a per-group name holds the group value as the data has it
#: (spaces, '+', '<', non-ASCII letters). One ending in '=' is refused.
_GATE = re.compile(
    r"^(?P<metric>.+)(?P<op><=|>=|<|>)\s*"
    r"(?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$",
    re.DOTALL,
)

BAD_GATE = (
    "--gate {text!r} is not a gate; expected METRIC OP NUMBER with OP one of "
    "<=, <, >=, > (e.g. 'gap<=0.05' or 'test_acc>=0.9')"
)
UNKNOWN_METRIC = (
    "--gate {text!r}: the model has no metric {metric!r}{hint}; available metrics: {available}"
)
DUPLICATE_GATE = "--gate {text!r} is given twice"
NO_SUCH_METRIC = (
    "--gate {text!r}: a version has no metric {metric!r}{hint}; metrics: {known}, "
    "and per group: {patterns}"
)

#: The metrics a version may have whatever its dataset (see
#: :mod:`regtune.platform.registry.evaluation`); some only with groups, a
#: binary task, robustness or post-processing.
KNOWN_METRICS: tuple[str, ...] = (
    "train_loss",
    "val_loss",
    "val_acc",
    "gap",
    "ece",
    "brier",
    "dp_diff",
    "eo_diff",
    "test_loss",
    "test_acc",
    "test_ece",
    "test_brier",
    "test_dp_diff",
    "test_eo_diff",
    "test_robust_acc",
    "test_raw_acc",
    "test_raw_dp_diff",
    "test_raw_eo_diff",
    "test_dp_diff_ci_low",
    "test_dp_diff_ci_high",
    "test_eo_diff_ci_low",
    "test_eo_diff_ci_high",
    "n_params",
    "size_bytes",
    "sparsity",
)
#: Per-group names (``<G>`` a group of the dataset), as shown in messages.
GROUP_PATTERNS: tuple[str, ...] = (
    "test_acc.<G>",
    "test_positive_rate.<G>",
    "test_tpr.<G>",
    "test_fpr.<G>",
    "test_selection_rate_<G>[_ci_low|_ci_high]",
    "test_tpr_<G>[_ci_low|_ci_high]",
    "test_fpr_<G>[_ci_low|_ci_high]",
)
_GROUP_NAME = re.compile(
    r"^test_(?:(?:acc|positive_rate|tpr|fpr)\..+"
    r"|(?:selection_rate|tpr|fpr)_.+?(?:_ci_low|_ci_high)?)$"
)


@dataclass(frozen=True)
class Gate:
    """One parsed gate."""

    metric: str
    op: str
    threshold: float
    text: str


@dataclass(frozen=True)
class GateResult:
    """A gate checked against one value; ``shortfall`` is how far it missed (0 if it held)."""

    gate: Gate
    value: float
    passed: bool
    shortfall: float

    def describe(self) -> str:
        """``"gap<=0.05: gap = 0.0712, fails by 0.0212"`` (or ``holds``)."""
        return f"{self.gate.text}: {self.gate.metric} = {self.value:.6g}, {self.verdict()}"

    def verdict(self, digits: int = 6) -> str:
        """``holds``, ``fails by 0.0212`` (``digits`` significant), or ``fails (no
        finite value)`` for a NaN or infinite metric."""
        if self.passed:
            return "holds"
        if not math.isfinite(self.value):
            return "fails (no finite value)"
        return f"fails by {self.shortfall:.{digits}g}"


def parse_gate(text: str) -> Gate:
    """Parse one gate.

    Raises:
        SpecError: naming the text and the expected form.
    """
    match = _GATE.match(text) if isinstance(text, str) else None
    metric = match.group("metric").strip() if match is not None else ""
    # "gap=<0.1", "gap=>0.1": a misspelt operator, not a metric named "gap=".
    if match is None or not metric or metric.endswith("="):
        raise SpecError(BAD_GATE.format(text=text))
    threshold = float(match.group("value"))
    if not math.isfinite(threshold):
        raise SpecError(BAD_GATE.format(text=text))
    compact = f"{metric}{match.group('op')}{match.group('value')}"
    return Gate(metric, match.group("op"), threshold, compact)


def parse_gates(texts: Iterable[str]) -> list[Gate]:
    """Parse several gates; the same gate twice is an error."""
    gates: list[Gate] = []
    for text in texts:
        gate = parse_gate(text)
        if any(g.text == gate.text for g in gates):
            raise SpecError(DUPLICATE_GATE.format(text=text))
        gates.append(gate)
    return gates


def check_gate_names(gates: Sequence[Gate]) -> None:
    """Refuse a gate on a metric no version can have, before anything is built.

    Raises:
        SpecError: naming the gate, the closest known names and every allowed name.
    """
    for gate in gates:
        if gate.metric in KNOWN_METRICS or _GROUP_NAME.match(gate.metric):
            continue
        hint = did_you_mean(gate.metric, KNOWN_METRICS, n=3)
        raise SpecError(
            NO_SUCH_METRIC.format(
                text=gate.text,
                metric=gate.metric,
                hint=hint,
                known=", ".join(KNOWN_METRICS),
                patterns=", ".join(GROUP_PATTERNS),
            )
        )


def check_gates(gates: Sequence[Gate], metrics: Mapping[str, float]) -> list[GateResult]:
    """Check every gate against ``metrics``.

    Raises:
        SpecError: a gate names a metric that ``metrics`` lacks (listing them).
    """
    results = []
    for gate in gates:
        if gate.metric not in metrics:
            hint = did_you_mean(gate.metric, metrics, n=3)
            raise SpecError(
                UNKNOWN_METRIC.format(
                    text=gate.text,
                    metric=gate.metric,
                    hint=hint,
                    available=", ".join(sorted(metrics)),
                )
            )
        value = float(metrics[gate.metric])
        passed = not math.isnan(value) and OPERATORS[gate.op](value, gate.threshold)
        shortfall = 0.0 if passed or math.isnan(value) else abs(value - gate.threshold)
        results.append(GateResult(gate, value, passed, shortfall))
    return results


def failed(results: Iterable[GateResult]) -> list[GateResult]:
    """The results whose gate did not hold."""
    return [r for r in results if not r.passed]
