"""Why a sweep has no best trial, in its outcome and in `regtune sweep`'s summary; constant
predictors marked in the summary table."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from regtune.platform.cli.sweep import CONSTANT_LEFT_OUT, CONSTANT_MARK, print_summary
from regtune.platform.results import ResultsWriter, SweepOutcome
from regtune.platform.results.outcome import NO_BEST_DOCS, TrialSummary
from regtune.search_spaces import load_spec
from tests.platform.results.conftest import tune_result

SPEC: dict[str, Any] = {
    "name": "churn",
    "dataset": "adult",
    "model": {"arch": "logreg"},
    "penalties": {"l2": {"grid": [1e-4, 1e-2]}},
    "objectives": [{"metric": "val_acc", "mode": "max"}],
    "scheduler": {"kind": "none"},
    "searcher": {"kind": "grid"},
    "budget": {"samples": 1, "max_epochs": 3},
}


def _stored(exp: Path, trials: dict[str, tuple[float, float]]) -> SweepOutcome:
    """A results store of 3-epoch trials (``{id: (val_acc, gap)}``; both group gaps
    set to ``gap``, so 0.0 is a constant predictor), read back as the CLI does."""
    spec = load_spec(SPEC)
    writer = ResultsWriter(str(exp), max_t=3, spec=spec.to_dict(), flush_s=0.0)
    for tid, (acc, gap) in trials.items():
        config = {"penalties": {"l2": 1e-4}, "training": {"epochs": 3}}
        for i in (1, 2, 3):
            metrics = {"val_acc": acc, "val_loss": 0.09, "dp_diff": gap, "eo_diff": gap}
            writer.add(tid, tune_result(i, config, **metrics))
        writer.end_trial(tid, error=False)
    writer.close()
    return SweepOutcome.from_path(str(exp))


def _summary(outcome: SweepOutcome, width: int = 160) -> str:
    console = Console(width=width, file=io.StringIO())
    print_summary(outcome, spec="sweep_imb.yaml", overrides=[], console=console)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_all_constant_predictors_the_summary_says_why_there_is_no_best(tmp_path: Path) -> None:
    # As a 2%-positive churn label gave: both trials predict "no" for every row.
    outcome = _stored(tmp_path / "churn", {"a": (0.9822, 0.0), "b": (0.9822, 0.0)})
    assert outcome.best is None
    reason = outcome.no_best_reason()
    assert reason is not None
    assert reason.startswith(
        "every trial predicts one class for every row (a constant predictor); for a constant "
        "predictor, val_acc (0.9822 here) is only the share of the rows in the class it "
        "predicts (the other 1.8% are in other classes)"
    )
    assert reason.endswith(f"see {NO_BEST_DOCS}")
    assert outcome.to_dict()["no_best"] == reason
    for width in (80, 160):
        text = _summary(outcome, width)
        lines = [" ".join(line.replace("│", " ").split()) for line in text.splitlines()]
        assert f"\nno best: {reason}\n" in text  # one line, never wrapped
        assert "regtune train" not in text
        # Each trial's row says it is a constant predictor.
        rows = [line for line in lines if line.split(" ")[0] in ("a", "b")]
        assert len(rows) == 2 and all(CONSTANT_MARK in row for row in rows), text


def test_with_a_best_the_constant_predictors_are_marked_and_counted(tmp_path: Path) -> None:
    outcome = _stored(tmp_path / "mixed", {"const": (0.9822, 0.0), "learned": (0.95, 0.04)})
    assert outcome.best is not None and outcome.best.trial_id == "learned"
    assert outcome.no_best_reason() is None and outcome.to_dict()["no_best"] is None
    text = _summary(outcome)
    assert "best by val_acc: trial learned" in text
    assert CONSTANT_LEFT_OUT.format(n=1, s="") in text
    marked = [line for line in text.splitlines() if CONSTANT_MARK in line]
    assert len(marked) == 2 and "const" in marked[0]  # the row, then the line below
    assert "learned" not in marked[0]
    # Without constant predictors: no note column, no line.
    plain = _stored(tmp_path / "plain", {"x": (0.9, 0.04), "y": (0.8, 0.02)})
    text = _summary(plain)
    assert "note" not in text and CONSTANT_MARK not in text
    assert json.loads(json.dumps(plain.to_dict()))["no_best"] is None


def _trial(tid: str, acc: float, *, status: str = "finished", degenerate: bool = False) -> Any:
    return TrialSummary(
        trial_id=tid,
        status=status,
        iterations=3,
        params={},
        objectives={"val_acc": acc},
        metrics={"val_acc": acc},
        checkpoint=None,
        degenerate=degenerate,
    )


def _outcome(trials: list[TrialSummary], metric: str = "val_acc") -> SweepOutcome:
    return SweepOutcome("s", "/runs/s", ((metric, "max"),), trials, 1.0)


def test_every_kind_of_reason() -> None:
    nan = float("nan")
    assert _outcome([]).no_best_reason() == "no trial reported a result"
    failed = [_trial("a", 0.9, status="error"), _trial("b", 0.8, status="error")]
    assert _outcome(failed).no_best_reason() == "every trial failed"
    assert _outcome([_trial("a", nan)]).no_best_reason() == "no trial reported a finite val_acc"
    mixed = _outcome(
        [
            _trial("a", 0.9, status="error"),
            _trial("b", 0.97, degenerate=True),
            _trial("c", 0.96, degenerate=True),
            _trial("d", nan),
        ]
    )
    reason = mixed.no_best_reason()
    assert reason is not None and reason.startswith(
        "of 4 trials, 1 failed, 2 predict one class for every row (constant predictors), "
        "1 reported no finite val_acc; for a constant predictor, val_acc (0.9700 here)"
    )
    # A loss objective says nothing about class shares; the docs are still named.
    loss = _outcome([_trial("a", 0.2, degenerate=True)], metric="val_loss")
    assert loss.no_best_reason() == (
        f"every trial predicts one class for every row (a constant predictor); see {NO_BEST_DOCS}"
    )
    assert _outcome([_trial("a", 0.9)]).no_best_reason() is None


def test_the_pure_reason_takes_what_a_trial_table_holds() -> None:
    from regtune.platform.results.outcome import no_best_reason

    # (status, degenerate, first objective): what analyze's trial summary has per trial.
    rows = [("finished", True, 0.9822), ("stopped early", True, 0.9822)]
    assert (
        no_best_reason(rows, "val_acc")
        == _outcome(
            [_trial("a", 0.9822, degenerate=True), _trial("b", 0.9822, degenerate=True)]
        ).no_best_reason()
    )
    assert no_best_reason([], "val_acc") == "no trial reported a result"
