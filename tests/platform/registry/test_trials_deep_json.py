"""Promotion's readers of a sweep's trial files take JSON nested too deeply as
unreadable (a left-out reason or a skipped row), never a RecursionError."""

from __future__ import annotations

import json
from pathlib import Path

from regtune.platform.registry.trials import read_objectives, read_sweep_trials

DEEP = "[" * 100_000 + "]" * 100_000


def test_a_params_json_nested_too_deeply_leaves_the_trial_out_with_why(tmp_path: Path) -> None:
    deep, good = tmp_path / "trial_a", tmp_path / "trial_b"
    for folder in (deep, good):
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps({"training_iteration": 1, "val_acc": 0.5}))
    (deep / "params.json").write_text(DEEP)
    (good / "params.json").write_text(json.dumps({"model": {"arch": "logreg"}}))
    trials = {t.path.name: t for t in read_sweep_trials(tmp_path)}
    assert trials["trial_a"].problem is not None
    assert trials["trial_a"].problem.startswith("params.json cannot be read (maximum recursion")
    assert trials["trial_b"].problem is None


def test_a_result_row_nested_too_deeply_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "trial_a"
    folder.mkdir()
    (folder / "params.json").write_text("{}")
    row = json.dumps({"training_iteration": 1, "val_acc": 0.75})
    (folder / "result.json").write_text(row + "\n" + DEEP + "\n")
    (trial,) = read_sweep_trials(tmp_path)
    assert trial.metrics["val_acc"] == 0.75


def test_a_spec_json_nested_too_deeply_names_no_objectives(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "spec.json").write_text(DEEP)
    assert read_objectives(tmp_path) is None
