"""``regtune sweep`` interrupted by Ctrl+C: exit 130, no time-limit claim, the
exact ``--resume`` line; and the header's trial count in words (``1 trial``).

``run_sweep`` is replaced by a stub here (no Ray); the real SIGINT and
resume are in tests/platform/tune/test_sweep_interrupt.py."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import regtune.platform.tune.sweep as sweep_module
from regtune.platform.cli.app import app
from regtune.platform.cli.sweep import INTERRUPTED_EXIT, resume_command
from regtune.platform.results.outcome import SweepOutcome, TrialSummary
from tests.platform.tune.stubs import TINY_SPEC

runner = CliRunner()


def _outcome(name: str, path: str, statuses: list[str]) -> SweepOutcome:
    trials = [
        TrialSummary(
            trial_id=f"ab12cd34_{i:05d}",
            status=status,
            iterations=3,
            params={"penalties.l2": 1e-4},
            objectives={"val_acc": 0.5 + i / 100},
            metrics={"val_acc": 0.5 + i / 100},
            checkpoint=None,
        )
        for i, status in enumerate(statuses)
    ]
    return SweepOutcome(
        name=name, path=path, objectives=(("val_acc", "max"),), trials=trials, elapsed_s=35.0
    )


def _stub_sweep(
    monkeypatch: pytest.MonkeyPatch, statuses: list[str], *, interrupted: bool
) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def run_sweep(spec: Any, **kwargs: Any) -> SweepOutcome:
        calls.append(kwargs)
        kwargs["on_ray_start"]()
        outcome = _outcome(kwargs["name"], f"/runs/{kwargs['name']}", statuses)
        if interrupted:
            # As run_sweep does: every trial Tune's saved state holds unfinished,
            # those created but not started (PENDING) included.
            unfinished = [t.trial_id for t in outcome.trials if t.status != "finished"]
            kwargs["on_interrupt"](unfinished)
        return outcome

    monkeypatch.setattr(sweep_module, "run_sweep", run_sweep)
    return calls


def _spec_file(tmp_path: Path, samples: int) -> Path:
    spec = tmp_path / "tiny.yaml"
    raw = TINY_SPEC | {"budget": {"samples": samples, "max_epochs": 3, "time_limit_s": 300}}
    spec.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return spec


def test_an_interrupted_sweep_exits_130_and_prints_the_resume_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # 3 trials asked for, 2 created before Ctrl+C: not the time limit's doing.
    _stub_sweep(monkeypatch, ["running", "running"], interrupted=True)
    (tmp_path / "my specs").mkdir()
    spec = _spec_file(tmp_path / "my specs", samples=3)
    args = ["sweep", str(spec), "--set", "training.lr=0.02", "--name", "int-1"]
    result = runner.invoke(app, [*args, "--storage", str(tmp_path / "runs")])
    assert result.exit_code == INTERRUPTED_EXIT == 130, result.output
    assert "time_limit_s" not in result.output
    assert "2 trials (2 running)" in result.stdout
    assert "interrupted: sweep int-1 stopped with 2 trials unfinished" in result.stderr
    line = result.stderr.strip().splitlines()[-1].strip()
    assert shlex.split(line) == [
        "regtune",
        "sweep",
        str(spec),
        "--set",
        "training.lr=0.02",
        "--storage",
        str(tmp_path / "runs"),
        "--name",
        "int-1",
        "--resume",
    ]


def test_a_sweep_that_ended_by_itself_exits_0_and_says_nothing_of_an_interrupt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _stub_sweep(monkeypatch, ["finished"], interrupted=False)
    result = runner.invoke(app, ["sweep", str(_spec_file(tmp_path, samples=1)), "--name", "one"])
    assert result.exit_code == 0, result.output
    assert "interrupted" not in result.output
    # One trial in words: "1 trial", not "1 trials".
    assert "sweep one: 1 trial, scheduler none" in result.stderr


def test_the_time_limit_is_still_named_when_it_ended_the_sweep(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _stub_sweep(monkeypatch, ["stopped early", "stopped early"], interrupted=False)
    result = runner.invoke(app, ["sweep", str(_spec_file(tmp_path, samples=3)), "--name", "cut"])
    assert result.exit_code == 0, result.output
    assert "budget.time_limit_s (300 s) ended the sweep: 2 of the 3 trials" in result.stdout


def test_the_resume_line_keeps_address_and_verbose_and_quotes_each_word() -> None:
    line = resume_command(
        "my spec.yaml",
        ["scheduler={kind: none}"],
        name="n",
        address="127.0.0.1:6379",
        verbose=True,
    )
    assert line == (
        "regtune sweep 'my spec.yaml' --set 'scheduler={kind: none}' "
        "--address 127.0.0.1:6379 --name n --resume --verbose"
    )


@pytest.mark.parametrize(
    ("statuses", "said"),
    [
        (["running", "running", "not started"], "stopped with 2 trials unfinished "
         "(stored as running), 1 not started; continue it with:"),
        (["running"], "stopped with 1 trial unfinished (stored as running); continue it with:"),
        (["not started", "not started"], "stopped before any trial reported an epoch "
         "(2 not started); continue it with:"),
    ],
)  # fmt: skip
def test_the_interrupt_line_counts_what_the_summary_counts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, statuses: list[str], said: str
) -> None:
    _stub_sweep(monkeypatch, statuses, interrupted=True)
    spec = _spec_file(tmp_path, samples=3)
    result = runner.invoke(app, ["sweep", str(spec), "--name", "int-2"])
    assert result.exit_code == INTERRUPTED_EXIT, result.output
    assert f"interrupted: sweep int-2 {said}" in result.stderr
