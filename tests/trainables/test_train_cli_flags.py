"""``regtune train``: a checkpoint flag without ``--checkpoint-dir`` is refused,
not silently ignored (no checkpoint would be written anywhere)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtune.platform.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--checkpoint-every", "2"], "--checkpoint-every needs --checkpoint-dir"),
        (["--resume"], "--resume needs --checkpoint-dir"),
    ],
)
def test_a_checkpoint_flag_without_a_directory_is_refused(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    spec = tmp_path / "run.yaml"
    spec.write_text(
        "dataset: digits\nmodel: {arch: mlp, width: 8, depth: 1}\n"
        "training: {epochs: 1, robust_every: 0}\n"
    )
    result = runner.invoke(app, ["train", str(spec), *flags, "--json"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "epochs" not in result.output  # refused before training


def test_checkpoint_every_zero_without_a_directory_is_the_default(tmp_path: Path) -> None:
    spec = tmp_path / "run.yaml"
    spec.write_text(
        "dataset: digits\nmodel: {arch: mlp, width: 8, depth: 1}\n"
        "training: {epochs: 1, robust_every: 0}\n"
    )
    result = runner.invoke(app, ["train", str(spec), "--checkpoint-every", "0", "--json"])
    assert result.exit_code == 0, result.output
