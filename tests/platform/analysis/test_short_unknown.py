"""Trials too short to diagnose when the trial table cannot be read: their status is
``unknown`` (a scheduler may have stopped them), so the verdict says so and does not
ask for more epochs. Real Parquet written by the results store, its trial table cut."""

from __future__ import annotations

from pathlib import Path

from regtune.platform.analysis.run import analyze_experiment
from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import HEALTHY, OVERFIT, SHORT, write_experiment

MORE_EPOCHS = "3 or more epochs (budget.max_epochs) are needed"


def _experiment(root: Path) -> Path:
    exp = root / "short"
    curves = {"h": HEALTHY, "o": OVERFIT, "s1": SHORT, "s2": SHORT}
    l2 = {"h": 1e-4, "o": 1e-6, "s1": 1e-3, "s2": 1e-2}
    configs = {t: {"penalties": {"l2": v}, "model": {"dropout": 0.1}} for t, v in l2.items()}
    write_experiment(str(exp), curves, configs, spec=load_spec("quickstart").to_dict())
    return exp


def _short_line(exp: Path) -> str:
    verdict = analyze_experiment(str(exp)).verdict
    return next(line for line in verdict if "too short to diagnose" in line)


def test_short_trials_of_unknown_status_are_not_told_to_need_more_epochs(
    tmp_path: Path,
) -> None:
    exp = _experiment(tmp_path)
    # Readable table: the scheduler stopped them (2 of 8 epochs), and that is said.
    line = _short_line(exp)
    assert "2 stopped early (by the scheduler or early stopping)" in line
    assert MORE_EPOCHS not in line
    trials = exp / "results" / "trials.parquet"
    trials.write_bytes(trials.read_bytes()[:100])
    line = _short_line(exp)
    assert line.startswith("2 trial(s) too short to diagnose (2 epochs < 3)"), line
    assert "2 of unknown status (the trial table could not be read)" in line
    assert MORE_EPOCHS not in line
