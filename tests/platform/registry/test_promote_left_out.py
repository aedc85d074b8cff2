"""Promotion says which trials it left out and why: constant predictors, failed trials,
no checkpoint, no objective value (a 2%-positive CSV trained for real; no Ray)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from regtune.errors import SpecError
from regtune.platform.cli import app
from regtune.platform.registry import registry_root
from regtune.platform.registry.promote import (
    NO_CHECKPOINT,
    STORE_REASONS,
    describe_left_out,
    left_out_reasons,
    promote,
)
from regtune.platform.registry.trials import SweepTrial, excluded_by_results_store
from regtune.platform.results import ResultsWriter
from regtune.platform.results.degenerate import is_constant_predictor
from tests.platform.registry.conftest import FinishedRun, write_trial

CONSTANT = STORE_REASONS["constant predictor"]
#: Rows of the synthetic churn file; 1.7% are positive (x1 > 2, seeded).
ROWS = 1000
#: A logistic regression that has not left its start after 2 epochs at lr 0.01:
#: the same class for every row (measured: val_acc 0.0133, dp_diff = eo_diff = 0).
CONSTANT_TRAINING = {"lr": 0.01, "epochs": 2}
#: One that learns the rare class (val_acc 0.993, dp_diff 0.018).
LEARNING_TRAINING = {"lr": 0.5, "epochs": 6}


def _churn_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=ROWS), rng.normal(size=ROWS)
    frame = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "grp": rng.choice(["a", "b"], size=ROWS),
            "churn": np.where(x1 > 2.0, "yes", "no"),
        }
    )
    frame.to_csv(path, index=False)
    return path


def _run(csv: Path, training: dict[str, Any]) -> FinishedRun:
    from regtune.trainables.loop import Trainer

    config = {
        "dataset": {
            "name": "csv",
            "path": str(csv),
            "label": "churn",
            "positive_label": "yes",
            "sensitive": "grp",
        },
        "model": {"arch": "logreg"},
        "training": {"batch_size": 256, "robust_every": 0, "seed": 0, **training},
    }
    trainer = Trainer(config, device="cpu")
    while not trainer.should_stop:
        trainer.run_epoch()
    return FinishedRun(trainer, trainer.finish())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FinishedRun]:
    """A constant predictor and a trial that learned, on one 2%-positive CSV."""
    csv = _churn_csv(tmp_path_factory.mktemp("data") / "churn.csv")
    out = {"const": _run(csv, CONSTANT_TRAINING), "learned": _run(csv, LEARNING_TRAINING)}
    assert is_constant_predictor(out["const"].trainer.history[-1])
    assert not is_constant_predictor(out["learned"].trainer.history[-1])
    return out


def _experiment(folder: Path, runs: dict[str, FinishedRun]) -> Path:
    """The trial folders Tune leaves and the results store the sweep's callback writes."""
    from regtune.search_spaces import load_spec

    dataset = next(iter(runs.values())).trainer.config.dataset.model_dump(mode="json")
    spec = load_spec(
        {
            "name": "churn",
            "dataset": dataset,
            "model": {"arch": "logreg"},
            "penalties": {"l2": {"grid": [0.0, 1e-4]}},
            "objectives": [{"metric": "val_acc", "mode": "max"}],
            "scheduler": {"kind": "none"},
            "searcher": {"kind": "grid"},
            "budget": {"samples": 1, "max_epochs": 10},
        }
    )
    writer = ResultsWriter(str(folder), max_t=10, spec=spec.to_dict(), flush_s=0.0)
    for trial_id, run in runs.items():
        trial = write_trial(folder, trial_id, run)
        config = run.trainer.config.model_dump(mode="json")
        history = run.trainer.history
        for i, row in enumerate(history, start=1):
            final = run.final if i == len(history) else {}
            writer.add(trial_id, {**row, **final, "training_iteration": i, "config": config})
        writer.end_trial(trial_id, error=False, checkpoint=str(trial / "checkpoint_000000"))
    writer.close()
    return folder


def test_every_trial_a_constant_predictor_is_the_reason_given(
    runs: dict[str, FinishedRun], tmp_path: Path
) -> None:
    exp = _experiment(tmp_path / "runs" / "churn", {"c0": runs["const"], "c1": runs["const"]})
    reason = "constant predictor"
    assert excluded_by_results_store(exp) == {"c0": reason, "c1": reason}
    with pytest.raises(SpecError) as info:
        promote(str(exp), name="churn", root=str(tmp_path / "r"))
    message = str(info.value)
    val_acc = runs["const"].trainer.history[-1]["val_acc"]
    assert f"left out: {CONSTANT}: c0, c1" in message
    assert f"The best val_acc, {val_acc:.4f}, is only the share of the class predicted" in message
    assert "docs/registry.md 'Trials promotion leaves out'" in message
    # The old, false wording is gone.
    assert "complete checkpoint" not in message
    assert not (tmp_path / "r").exists()  # nothing written


def test_fewer_than_top_k_names_the_constant_predictor(
    runs: dict[str, FinishedRun], tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    _experiment(storage / "mixed", {"const": runs["const"], "learned": runs["learned"]})
    result = promote("mixed", name="churn", top_k=3, storage=str(storage))
    assert [t.trial_id for t in result.members] == ["learned"]
    assert result.left_out == {"const": CONSTANT}
    assert result.warnings[0] == (
        "--top-k 3: only 1 of 2 trial(s) can be promoted, so the ensemble has 1 member(s); "
        f"left out: {CONSTANT}: const"
    )
    assert result.version is not None
    assert result.version.meta["lineage"]["left_out"] == {"const": CONSTANT}
    # The CLI shows the warning, and --json carries the reasons by trial.
    runner = CliRunner()
    shown = runner.invoke(
        app, ["promote", "mixed", "--name", "again", "--top-k", "2", "--storage", str(storage)]
    )
    assert shown.exit_code == 0, shown.output
    assert f"left out: {CONSTANT}: const" in " ".join(shown.stdout.split())
    as_json = runner.invoke(
        app,
        ["promote", "mixed", "--name", "j", "--top-k", "1", "--storage", str(storage), "--json"],
    )
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    assert payload["left_out"] == {"const": CONSTANT} and payload["warnings"] == []
    assert registry_root(str(storage)).endswith("registry")


def _trial(trial_id: str, metrics: dict[str, Any], checkpoint: bool = True) -> SweepTrial:
    return SweepTrial(trial_id, Path(trial_id), {}, metrics, Path("c") if checkpoint else None, 1)


def test_each_reason_and_how_many_ids_are_named() -> None:
    trials = [
        _trial("ok", {"val_acc": 0.9, "dp_diff": 0.1}),
        _trial("const", {"val_acc": 0.98}),
        _trial("failed", {"val_acc": 0.5}),
        _trial("nockpt", {"val_acc": 0.9}, checkpoint=False),
        _trial("nan", {"val_acc": float("nan"), "dp_diff": 0.1}),
        _trial("partial", {"val_acc": 0.8}),
    ]
    excluded = {"const": "constant predictor", "failed": "error"}
    objectives = [("val_acc", "max"), ("dp_diff", "min")]
    reasons = left_out_reasons(trials, {"ok"}, excluded, objectives)
    assert reasons == {
        "const": CONSTANT,
        "failed": "failed",
        "nockpt": NO_CHECKPOINT,
        "nan": "no finite val_acc",
        "partial": "no finite dp_diff",
    }
    assert describe_left_out(reasons) == (
        f"{CONSTANT}: const; failed: failed; {NO_CHECKPOINT}: nockpt; "
        "no finite val_acc: nan; no finite dp_diff: partial"
    )
    many = {f"t{i}": CONSTANT for i in range(7)} | {"x": NO_CHECKPOINT}
    assert describe_left_out(many) == f"{CONSTANT}: t0, t1, t2 and 4 more; {NO_CHECKPOINT}: x"


def test_no_trial_with_a_checkpoint_names_each_trial(
    runs: dict[str, FinishedRun], tmp_path: Path
) -> None:
    exp = tmp_path / "nockpt"
    import shutil

    write_trial(exp, "learned", runs["learned"])
    shutil.rmtree(exp / "trial_learned" / "checkpoint_000000")
    with pytest.raises(SpecError, match=f"no trial can be promoted; left out: {NO_CHECKPOINT}: "):
        promote(str(exp), name="x", objectives=[("val_acc", "max")], root=str(tmp_path / "r"))
