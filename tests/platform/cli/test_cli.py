"""The regtune command line: real commands, bad input at every door."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from regtune.platform.cli import app

runner = CliRunner()


def test_train_json_prints_final_metrics(data_cache: Path) -> None:
    result = runner.invoke(app, ["train", "quickstart", "--set", "budget.max_epochs=2", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["epochs"] == 2
    assert 0.0 < payload["metrics"]["test_acc"] <= 1.0
    assert payload["config"]["dataset"]["name"] == "digits"


def test_train_checkpoint_and_resume(data_cache: Path, tmp_path: Path) -> None:
    spec = tmp_path / "run.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "dataset": "digits",
                "model": {"arch": "mlp", "width": 16, "depth": 1},
                "training": {"epochs": 3, "robust_every": 0},
            }
        )
    )
    ckpt = tmp_path / "ckpt"
    first = runner.invoke(app, ["train", str(spec), "--checkpoint-dir", str(ckpt), "--json"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(
        app,
        ["train", str(spec), "--set", "training.epochs=5", "--checkpoint-dir", str(ckpt)],
    )
    # Without --resume an existing checkpoint is never overwritten.
    assert again.exit_code == 2 and "already exists" in again.output
    resumed = runner.invoke(
        app, ["train", str(spec), "--checkpoint-dir", str(ckpt), "--resume", "--json"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["epochs"] == 3


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "no-such-spec"], "no-such-spec"),
        (["train", "quickstart", "--set", "penalties.l9=1"], "penalties.l9"),
        (["train", "quickstart", "--set", "budget.samples"], "budget.samples"),
        (["train", "quickstart", "--resume"], "--resume needs --checkpoint-dir"),
        (
            ["train", "quickstart", "--resume", "--checkpoint-dir", "/nonexistent/ckpt"],
            "no checkpoint directory at /nonexistent/ckpt",
        ),
        (["sweep", "quickstart", "--set", "scheduler.kind=fastest"], "scheduler"),
        (["sweep", "quickstart", "--set", "resources.cpu=-1"], "resources.cpu"),
        (["submit", "quickstart", "--set", "budget.max_epochs=0"], "budget.max_epochs"),
        (["submit", "quickstart", "--address", "http://127.0.0.1:1"], "127.0.0.1:1"),
        (["data", "fetch", "mnist"], "mnist"),
    ],
)
def test_bad_input_exits_2_with_a_message(args: list[str], fragment: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert fragment in result.output


def test_console_script_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "regtune.platform.cli", "data", "list"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.split() == ["digits", "breast_cancer", "adult", "german", "compas"]


@pytest.mark.ray
def test_quickstart_runs_the_default_sweep(ray_local: None, tmp_path: Path) -> None:
    result = runner.invoke(app, ["quickstart", "--storage", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "quickstart-" in result.stdout
    assert "6 trials" in result.stdout
    assert len(list(tmp_path.glob("quickstart-*/trial_*"))) == 6


@pytest.mark.ray
def test_sweep_json_summary(ray_local: None, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "sweep",
            "quickstart",
            "--set",
            "budget.samples=2",
            "--set",
            "budget.max_epochs=2",
            "--storage",
            str(tmp_path),
            "--name",
            "cli-json",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["name"] == "cli-json" and len(summary["trials"]) == 2
    again = runner.invoke(
        app, ["sweep", "quickstart", "--storage", str(tmp_path), "--name", "cli-json"]
    )
    assert again.exit_code == 2 and "already exists" in again.output
