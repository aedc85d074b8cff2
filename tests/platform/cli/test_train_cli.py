"""``regtune train``: strict JSON output, and resuming under changed settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from regtune.platform.cli import app
from regtune.trainables.checkpoint import TENSORS_FILE, TREE_FILE

runner = CliRunner()


def _refuse(constant: str) -> Any:
    raise AssertionError(f"not strict JSON: {constant}")


def _spec(tmp_path: Path, epochs: int) -> Path:
    spec = tmp_path / "run.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "dataset": "digits",
                "model": {"arch": "mlp", "width": 16, "depth": 1},
                "training": {"epochs": epochs, "robust_every": 0},
                "penalties": {"l2": 0.1},
            }
        )
    )
    return spec


def test_json_is_strict_with_null_for_non_finite_metrics(data_cache: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(_spec(tmp_path, 1)), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1], parse_constant=_refuse)
    metrics = payload["metrics"]
    # One epoch of a small model leaves empty reliability bins: their means are null.
    empty = [k for k, v in metrics.items() if k.endswith(".count") and v == 0]
    assert empty, "expected an empty reliability bin"
    assert metrics[empty[0].replace(".count", ".acc")] is None
    assert 0.0 < metrics["test_acc"] <= 1.0


def test_resume_with_changed_settings_warns_or_refuses_when_finished(
    data_cache: Path, tmp_path: Path
) -> None:
    spec, ckpt = _spec(tmp_path, 2), tmp_path / "ckpt"
    first = runner.invoke(app, ["train", str(spec), "--checkpoint-dir", str(ckpt), "--json"])
    assert first.exit_code == 0, first.output

    # Finished (2 of 2 epochs) and l2 changed: nothing would train with 0.5.
    stored = {name: (ckpt / name).read_bytes() for name in (TENSORS_FILE, TREE_FILE)}
    args = ["train", str(spec), "--checkpoint-dir", str(ckpt), "--resume", "--json"]
    refused = runner.invoke(app, [*args, "--set", "penalties.l2=0.5"])
    assert refused.exit_code == 2, refused.output
    message = " ".join(refused.stderr.split())
    assert "already finished (2 epochs)" in message
    assert "penalties.l2 0.1 -> 0.5" in message
    assert {name: (ckpt / name).read_bytes() for name in stored} == stored

    # More epochs and a changed l2: trained on, with a warning naming the change.
    more = runner.invoke(app, [*args, "--set", "penalties.l2=0.5", "--set", "training.epochs=3"])
    assert more.exit_code == 0, more.output
    warning = " ".join(more.stderr.split())
    assert "warning: --resume" in warning and "trained for 2 epochs" in warning
    assert "penalties.l2 0.1 -> 0.5" in warning and "training.epochs" not in warning
    payload = json.loads(more.stdout.strip().splitlines()[-1], parse_constant=_refuse)
    assert payload["epochs"] == 3
    assert payload["changed_on_resume"] == {"penalties.l2": {"old": 0.1, "new": 0.5}}

    # The same settings again: no warning.
    same = runner.invoke(app, [*args, "--set", "penalties.l2=0.5", "--set", "training.epochs=3"])
    assert same.exit_code == 0, same.output
    assert "warning" not in same.stderr


def test_a_folder_as_data_file_and_a_file_as_checkpoint_directory_are_named(
    data_cache: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    spec = tmp_path / "csv.yaml"
    spec.write_text(yaml.safe_dump({"dataset": {"name": "csv", "path": str(folder), "label": "y"}}))
    result = runner.invoke(app, ["train", str(spec)])
    assert result.exit_code == 2
    assert f"dataset.path: {folder}: is a folder, not a file; expected a csv file" in result.output
    plain = tmp_path / "digits.yaml"
    plain.write_text(yaml.safe_dump({"dataset": "digits", "training": {"epochs": 1}}))
    for extra in ([], ["--resume"]):
        result = runner.invoke(app, ["train", str(plain), "--checkpoint-dir", str(plain), *extra])
        assert result.exit_code == 2, result.output
        assert f"checkpoint directory {plain} is a file, not a directory" in result.output
    assert yaml.safe_load(plain.read_text()) == {"dataset": "digits", "training": {"epochs": 1}}
