"""A sweep ended by ``budget.time_limit_s``: its summary says the time limit ended
it after N of the trials the spec asks for, and a trial that never trained is
shown ``not started``, not ``stopped early``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from regtune.platform.cli.app import app
from regtune.platform.cli.sweep import NOT_STARTED
from regtune.platform.results.outcome import SweepOutcome
from tests.platform.tune.stubs import TINY_SPEC

runner = CliRunner()

#: 40 trials of 20 epochs cannot all train within 2 s, and Tune creates more
#: trials than the CPUs can run at once: some end without an epoch.
CUT: dict[str, Any] = TINY_SPEC | {
    "name": "cut",
    "budget": {"samples": 40, "max_epochs": 20, "time_limit_s": 2},
}


@pytest.mark.ray
def test_a_sweep_cut_by_its_time_limit_says_so_and_never_calls_an_untrained_trial_stopped_early(
    ray_local: None, tmp_path: Path
) -> None:
    spec = tmp_path / "cut.yaml"
    spec.write_text(yaml.safe_dump(CUT), encoding="utf-8")
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["sweep", str(spec), "--storage", str(runs), "--name", "cut"])
    assert result.exit_code == 0, result.output
    trials = SweepOutcome.from_path(str(runs / "cut")).trials
    unstarted = [t.trial_id for t in trials if t.iterations == 0 and t.status != "error"]
    assert len(trials) < 40 or unstarted
    found = re.search(
        r"budget.time_limit_s \(2 s\) ended the sweep: (\d+) of the 40 trials the spec asks "
        r"for started(?: \((\d+) more were queued but never started\))?; raise budget.time_limit_s",
        result.stdout,
    )
    assert found, result.stdout
    assert int(found.group(1)) == len(trials) - len(unstarted)
    assert int(found.group(2) or 0) == len(unstarted)
    # The table and the counts say "not started" for a trial without an epoch.
    for line in result.stdout.splitlines():
        if any(t[-5:] in line for t in unstarted) and "│" in line:
            assert NOT_STARTED in line and "stopped early" not in line
    counts = re.search(r"^\d+ trials \((.*)\) in [\d.]+ s$", result.stdout, re.MULTILINE)
    assert counts, result.stdout
    if unstarted:
        assert f"{len(unstarted)} {NOT_STARTED}" in counts.group(1)


def test_without_a_time_limit_nothing_is_said_of_one() -> None:
    from io import StringIO

    from rich.console import Console

    from regtune.platform.cli.sweep import print_summary

    outcome = SweepOutcome(
        name="x", path="/nowhere/x", trials=[], objectives=(("val_acc", "max"),), elapsed_s=1.0
    )
    console = Console(file=StringIO(), width=120)
    print_summary(outcome, spec="x.yaml", overrides=[], console=console, requested=10)
    assert "time_limit_s" not in console.file.getvalue()  # type: ignore[attr-defined]
