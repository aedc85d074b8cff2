"""Gate text, objective text, trial ranking and version diffs: pure functions."""

from __future__ import annotations

import math

import pytest

from regtune.errors import SpecError
from regtune.platform.registry.diff import diff_meta, flatten
from regtune.platform.registry.gates import check_gates, failed, parse_gate, parse_gates
from regtune.platform.registry.selection import parse_objective, rank


@pytest.mark.parametrize(
    ("text", "metric", "op", "threshold"),
    [
        ("gap<=0.05", "gap", "<=", 0.05),
        (" test_dp_diff <= 2e-2 ", "test_dp_diff", "<=", 0.02),
        ("test_acc>=.9", "test_acc", ">=", 0.9),
        ("test_acc.Female>0.5", "test_acc.Female", ">", 0.5),
        ("ece<-1", "ece", "<", -1.0),
    ],
)
def test_parse_gate(text: str, metric: str, op: str, threshold: float) -> None:
    gate = parse_gate(text)
    assert (gate.metric, gate.op, gate.threshold) == (metric, op, threshold)


@pytest.mark.parametrize(
    "text",
    ["", "gap", "gap<", "gap=<0.1", "gap==0.1", "<=0.1", "gap<=abc", "gap<=0.1x", "gap<=inf"],
)
def test_bad_gate_text_is_refused(text: str) -> None:
    with pytest.raises(SpecError, match=r"is not a gate; expected METRIC OP NUMBER"):
        parse_gate(text)


def test_duplicate_gate_is_refused() -> None:
    with pytest.raises(SpecError, match="given twice"):
        parse_gates(["gap<=0.1", "gap <= 0.1"])


def test_check_gates_reports_the_shortfall() -> None:
    gates = parse_gates(["gap<=0.05", "test_acc>=0.9", "ece<0.1"])
    results = check_gates(gates, {"gap": 0.08, "test_acc": 0.95, "ece": math.nan})
    assert [r.passed for r in results] == [False, True, False]
    assert results[0].shortfall == pytest.approx(0.03)
    assert results[0].describe() == "gap<=0.05: gap = 0.08, fails by 0.03"
    assert results[1].describe().endswith("holds")
    assert "no finite value" in results[2].describe()
    assert [r.gate.metric for r in failed(results)] == ["gap", "ece"]


def test_gate_on_an_unknown_metric_lists_the_available_ones() -> None:
    with pytest.raises(SpecError, match=r"no metric 'gapp'; available metrics: gap, test_acc"):
        check_gates(parse_gates(["gapp<=0.1"]), {"gap": 0.0, "test_acc": 1.0})


def test_parse_objective() -> None:
    assert parse_objective("val_acc:max") == ("val_acc", "max")
    assert parse_objective("val_loss") == ("val_loss", "min")
    assert parse_objective("test_acc") == ("test_acc", "max")
    for bad in ("val_acc:up", "mystery", ":max"):
        with pytest.raises(SpecError, match="--objective"):
            parse_objective(bad)


def test_rank_single_and_pareto() -> None:
    rows = [
        {"val_acc": 0.8, "sparsity": 0.1},
        {"val_acc": 0.9, "sparsity": 0.0},
        {"val_acc": math.nan, "sparsity": 0.9},
        {"val_acc": 0.7, "sparsity": 0.05},  # dominated by row 0
        {"sparsity": 0.5},  # no val_acc
        {"val_acc": 0.6, "sparsity": 0.6},
    ]
    ids = ["t0", "t1", "t2", "t3", "t4", "t5"]
    assert rank(rows, [("val_acc", "max")], ids) == [1, 0, 3, 5]
    order = rank(rows, [("val_acc", "max"), ("sparsity", "max")], ids)
    assert set(order[:3]) == {0, 1, 5} and order[3] == 3
    assert rank(rows, [("brier", "min")], ids) == []
    # Ties on one objective: the lower val_loss first, then the trial id, whatever the row order.
    tied = [{"val_acc": 0.9, "val_loss": 0.3}, {"val_acc": 0.9, "val_loss": 0.2}, {"val_acc": 0.9}]
    assert rank(tied, [("val_acc", "max")], ["a", "b", "c"]) == [1, 0, 2]
    assert rank(tied[::-1], [("val_acc", "max")], ["c", "b", "a"]) == [1, 2, 0]


def test_diff_meta_lists_changed_leaves_only() -> None:
    a = {"kind": "single", "metrics": {"test_acc": 0.9, "gap": 0.1}, "lineage": {"trials": ["a"]}}
    b = {
        "kind": "single",
        "metrics": {"test_acc": 0.92, "gap": 0.1},
        "lineage": {"trials": ["a", "b"]},
    }
    assert diff_meta(a, b) == {
        "metrics": [("metrics.test_acc", 0.9, 0.92)],
        "lineage": [("lineage.trials.1", None, "b")],
    }
    assert flatten({"x": {"y": [1, {"z": 2}]}}) == {"x.y.0": 1, "x.y.1.z": 2}
