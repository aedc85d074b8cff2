"""A gate's METRIC is the text before the operator, so a gate can name every metric a
version can hold: per-group names carry the group value as the data has it (spaces,
'+', '<', non-ASCII letters), which the old ``[A-Za-z0-9_.-]`` pattern refused as
"is not a gate"."""

from __future__ import annotations

import pytest

from regtune.errors import SpecError
from regtune.platform.registry.gates import (
    check_gate_names,
    check_gates,
    parse_gate,
    parse_gates,
)


@pytest.mark.parametrize(
    ("text", "metric", "op", "threshold"),
    [
        ("test_acc.group one>=0.5", "test_acc.group one", ">=", 0.5),
        ("  test_acc.group one  >=  0.5 ", "test_acc.group one", ">=", 0.5),
        ("test_tpr_35+<0.9", "test_tpr_35+", "<", 0.9),
        ("test_acc.Zürich-Öst>0.7", "test_acc.Zürich-Öst", ">", 0.7),
        ("test_acc.名古屋<=1", "test_acc.名古屋", "<=", 1.0),
        # The operator is the one just before the number: a group value may hold one.
        ("test_acc.<30>=0.5", "test_acc.<30", ">=", 0.5),
        ("test_positive_rate.>50K <= 0.4", "test_positive_rate.>50K", "<=", 0.4),
        ("gap>-1e-3", "gap", ">", -0.001),
    ],
)
def test_any_metric_name_before_the_operator(
    text: str, metric: str, op: str, threshold: float
) -> None:
    gate = parse_gate(text)
    assert (gate.metric, gate.op, gate.threshold) == (metric, op, threshold)
    assert gate.text == f"{metric}{op}{text.rsplit(op, 1)[1].strip()}"


@pytest.mark.parametrize(
    "text", [">=0.5", "   <= 0.5", "gap<=", "gap 0.5", "gap=0.5", "gap<=1 x", "gap=>0.1", "gap =<1"]
)
def test_no_metric_or_no_comparison_is_still_not_a_gate(text: str) -> None:
    with pytest.raises(SpecError, match=r"is not a gate; expected METRIC OP NUMBER"):
        parse_gate(text)


def test_a_group_with_spaces_plus_and_non_ascii_is_checked_against_the_version() -> None:
    metrics = {"test_acc.group one": 0.6, "test_tpr_35+": 0.95, "test_acc.Zürich": 0.4}
    gates = parse_gates(["test_acc.group one>=0.5", "test_tpr_35+<0.9", "test_acc.Zürich>=0.5"])
    check_gate_names(gates)  # per-group names pass the early check
    results = check_gates(gates, metrics)
    assert [r.passed for r in results] == [True, False, False]
    assert results[1].describe() == "test_tpr_35+<0.9: test_tpr_35+ = 0.95, fails by 0.05"
    with pytest.raises(SpecError, match="given twice"):
        parse_gates(["test_acc.group one>=0.5", "test_acc.group one >= 0.5"])
