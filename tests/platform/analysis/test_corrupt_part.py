"""An experiment whose only epoch part is unreadable: the analysis says the part
was skipped as unreadable (naming it), not that the experiment has no epochs yet."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtune.errors import DataError
from regtune.platform.analysis.load import load_experiment
from regtune.platform.cli import app
from tests.platform.analysis.tables import HEALTHY, write_experiment


def _one_truncated_part(root: Path) -> Path:
    exp = root / "e1"
    write_experiment(str(exp), {"a": HEALTHY}, {"a": {"penalties": {"l2": 1e-3}}})
    parts = sorted((exp / "results" / "epochs").glob("part-*.parquet"))
    assert len(parts) == 1, parts
    data = parts[0].read_bytes()
    parts[0].write_bytes(data[: len(data) // 2])
    return exp


def test_only_part_truncated_is_named_not_wait(tmp_path: Path) -> None:
    exp = _one_truncated_part(tmp_path)
    part = next((exp / "results" / "epochs").glob("part-*.parquet"))
    for columns in (None, ["val_acc"]):
        with pytest.raises(DataError) as info:
            load_experiment(str(exp), columns=columns)
        message = str(info.value)
        assert "no epoch part could be read" in message, message
        assert f"{part}: skipped (not readable as Parquet" in message, message
        assert "Wait for" not in message
    assert part.exists()


def test_analyze_cli_names_the_skipped_part(tmp_path: Path) -> None:
    exp = _one_truncated_part(tmp_path)
    result = CliRunner().invoke(app, ["analyze", str(exp)])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "no epoch part could be read" in output
    assert "not readable as Parquet" in output
    assert "Wait for its first trial" not in output


def test_empty_experiment_still_says_wait(tmp_path: Path) -> None:
    exp = _one_truncated_part(tmp_path)
    for part in (exp / "results" / "epochs").glob("part-*.parquet"):
        part.unlink()
    with pytest.raises(DataError, match="no reported epochs yet"):
        load_experiment(str(exp), columns=["val_acc"])
