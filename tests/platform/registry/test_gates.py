"""Gate text, objective text, trial ranking and version diffs: pure functions."""

from __future__ import annotations

import math
from typing import Any

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
    with pytest.raises(
        SpecError,
        match=r"no metric 'gapp' \(did you mean 'gap'\?\); available metrics: gap, test_acc",
    ):
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
    # Several objectives: the first member is the trial the sweep calls best.
    assert order[0] == 1
    front = [{"val_acc": 0.80, "dp_diff": 0.10}, {"val_acc": 0.85, "dp_diff": 0.15}]
    front.append({"val_acc": 0.90, "dp_diff": 0.20})
    two = [("val_acc", "max"), ("dp_diff", "min")]
    assert rank(front, two, ["a1", "b2", "c3"])[0] == 2
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


# --- the ensemble against its best member, on validation -------------------------


def test_dominating_member_single_and_several_objectives() -> None:
    from regtune.platform.registry.ensemble import dominating_member

    ens = {"val_acc": 0.79, "dp_diff": 0.10}
    members = [{"val_acc": 0.85, "dp_diff": 0.12}, {"val_acc": 0.28, "dp_diff": 0.01}]
    assert dominating_member(ens, members, [("val_acc", "max")]) == 0
    assert dominating_member({"val_acc": 0.9}, members, [("val_acc", "max")]) is None
    # equal is not better
    assert dominating_member({"val_acc": 0.85}, members, [("val_acc", "max")]) is None
    # two objectives: neither member is at least as good on both
    assert dominating_member(ens, members, [("val_acc", "max"), ("dp_diff", "min")]) is None
    better = [*members, {"val_acc": 0.80, "dp_diff": 0.10}]
    assert dominating_member(ens, better, [("val_acc", "max"), ("dp_diff", "min")]) == 2
    assert dominating_member({"val_acc": math.nan}, members, [("val_acc", "max")]) is None


def _trial(experiment: Any, trial_id: str, digits: Any, *, spoil: bool) -> None:
    """Write a finished tiny digits trial; ``spoil`` makes its network confidently
    wrong (output rows rolled by one class, scaled up) and its reported val_acc low."""
    import torch

    from regtune.trainables.loop import Trainer
    from tests.platform.registry.conftest import TINY_CONFIG, FinishedRun, write_trial

    config = {**TINY_CONFIG, "training": {**TINY_CONFIG["training"], "epochs": 3, "lr": 0.05}}
    trainer = Trainer(config, dataset=digits, device="cpu")
    while not trainer.should_stop:
        trainer.run_epoch()
    final = trainer.finish()
    if spoil:
        last = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.copy_(10 * last.weight.roll(1, dims=0))
            last.bias.copy_(10 * last.bias.roll(1, dims=0))
        final = {**final, "val_acc": 0.05}
        trainer.history[-1]["val_acc"] = 0.05  # and the checkpoint's history, as a real report
    write_trial(experiment, trial_id, FinishedRun(trainer, final))


def test_promote_warns_when_a_member_alone_beats_the_ensemble_on_validation(
    tmp_path: Any, digits: Any
) -> None:
    from regtune.platform.registry.promote import promote

    experiment = tmp_path / "storage" / "mixed"
    _trial(experiment, "good", digits, spoil=False)
    _trial(experiment, "bad", digits, spoil=True)
    root = str(tmp_path / "registry")
    result = promote(
        str(experiment),
        name="mixed",
        top_k=2,
        objectives=[("val_acc", "max")],
        gates=parse_gates(["test_acc>=0.0"]),
        root=root,
    )
    assert result.passed and result.version is not None
    assert [t.trial_id for t in result.members] == ["good", "bad"]
    comparison = result.validation
    assert comparison is not None and comparison.better_member == "good"
    ens, good = comparison.ensemble["val_acc"], comparison.members["good"]["val_acc"]
    assert ens < good
    # the ensemble's validation accuracy is the version's own (no post-processing here)
    assert ens == pytest.approx(result.metrics["val_acc"])
    (warning,) = result.warnings
    assert f"val_acc {ens:.4f}" in warning and f"val_acc {good:.4f}" in warning
    assert "--top-k 1" in warning and "good" in warning
    assert result.version.meta["lineage"]["warnings"] == [warning]
    # one member: nothing to compare, no warning
    alone = promote(
        str(experiment), name="alone", top_k=1, objectives=[("val_acc", "max")], root=root
    )
    assert alone.validation is None and alone.warnings == []
    # More members asked for than trials qualify: said, not silently fewer.
    nine = promote(
        str(experiment), name="nine", top_k=9, objectives=[("val_acc", "max")], root=root
    )
    assert nine.warnings[0] == (
        "--top-k 9: only 2 trial(s) have a checkpoint and every objective, so the ensemble "
        "has 2 member(s)"
    )
    # --select greedy: the bad member does not improve validation, so it is left out
    greedy = promote(
        str(experiment),
        name="greedy",
        top_k=2,
        objectives=[("val_acc", "max")],
        select="greedy",
        root=root,
    )
    assert [t.trial_id for t in greedy.members] == ["good"] and greedy.dropped == ["bad"]
    assert greedy.warnings == [] and greedy.version is not None
    lineage = greedy.version.meta["lineage"]
    assert lineage["member_selection"] == "greedy"
    assert lineage["dropped_by_selection"] == ["bad"]
    with pytest.raises(SpecError, match="--select 'best' is not allowed"):
        promote(str(experiment), name="x", select="best", root=root)
    with pytest.raises(SpecError, match="one of val_loss, val_acc"):
        promote(str(experiment), name="x", objectives=[("gap", "min")], select="greedy", root=root)


def test_greedy_forward_adds_members_only_while_the_score_improves() -> None:
    from regtune.platform.registry.ensemble import greedy_forward

    # score of a subset: a table; member 1 is the best alone, 1+2 improves, +0 does not
    table = {(0,): 0.7, (1,): 0.8, (2,): 0.6, (1, 0): 0.79, (1, 2): 0.85, (1, 2, 0): 0.85}
    assert greedy_forward(3, lambda c: table[tuple(c)], "max") == [1, 2]
    losses = {(0,): 0.5, (1,): 0.4, (1, 0): 0.3}
    assert greedy_forward(2, lambda c: losses[tuple(c)], "min") == [1, 0]
    assert greedy_forward(1, lambda c: 0.0, "max") == [0]


# --- gate names checked before anything is loaded ----------------------------------


def test_a_misspelt_gate_is_refused_before_the_experiment_is_read(tmp_path: Any) -> None:
    from regtune.platform.registry.promote import promote

    with pytest.raises(SpecError) as info:
        # the experiment does not exist: the gate is refused first
        promote(
            str(tmp_path / "nosuch"),
            name="m",
            gates=parse_gates(["test_accc>=0.5"]),
            root=str(tmp_path / "reg"),
        )
    message = str(info.value)
    assert "no metric 'test_accc'" in message and "did you mean 'test_acc'" in message
    assert "test_acc.<G>" in message
    assert not (tmp_path / "reg").exists()


@pytest.mark.parametrize(
    "metric",
    ["test_acc.Female", "test_tpr.1", "test_selection_rate_African_American_ci_high", "test_fpr_a"],
)
def test_per_group_gate_names_pass_the_early_check(metric: str) -> None:
    from regtune.platform.registry.gates import check_gate_names

    check_gate_names(parse_gates([f"{metric}<=1"]))


def test_every_metric_of_a_real_version_passes_the_early_check(tiny_version: Any) -> None:
    from regtune.platform.registry.gates import check_gate_names

    check_gate_names(parse_gates([f"{m}<=1" for m in tiny_version.metrics]))


def test_a_gate_missing_from_the_version_suggests_the_closest_names() -> None:
    with pytest.raises(SpecError, match=r"did you mean 'test_acc'\?"):
        check_gates(parse_gates(["test_acc.x>=0.5"]), {"test_acc": 0.9, "gap": 0.1})


def test_promote_cli_prints_the_warning_and_the_greedy_choice(tmp_path: Any, digits: Any) -> None:
    import json

    from typer.testing import CliRunner

    from regtune.platform.cli import app

    storage = tmp_path / "storage"
    _trial(storage / "mixed", "good", digits, spoil=False)
    _trial(storage / "mixed", "bad", digits, spoil=True)
    runner = CliRunner()
    base = ["promote", "mixed", "--top-k", "2", "--objective", "val_acc", "--storage", str(storage)]
    shown = runner.invoke(app, [*base, "--name", "mixed"])
    assert shown.exit_code == 0, shown.output
    assert "warning: the ensemble is worse on validation than its member good" in shown.stdout
    data = json.loads(runner.invoke(app, [*base, "--name", "mixed", "--json"]).stdout)
    assert data["warnings"] and data["validation"]["better_member"] == "good"
    assert data["select"] == "top" and data["dropped"] == []
    greedy = runner.invoke(app, [*base, "--name", "lean", "--select", "greedy"])
    assert greedy.exit_code == 0, greedy.output
    assert "left out by --select greedy: bad" in greedy.stdout
    bad = runner.invoke(app, [*base, "--name", "x", "--select", "best"])
    assert bad.exit_code == 2 and "--select 'best' is not allowed" in bad.output
