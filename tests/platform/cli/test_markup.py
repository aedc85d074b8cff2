"""Text from users and data prints as written: a path, a ``--set`` value or a
column name holding ``[...]`` is neither read as Rich markup (a MarkupError
traceback, or the bracketed part lost) nor changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtune.platform.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["train", "nosuch[/x].yaml"], "nosuch[/x].yaml"),
        (["train", "nosuch[bold].yaml"], "nosuch[bold].yaml"),
        (["train", "quickstart", "--set", "penalties.l2=[/]"], "penalties.l2"),
        (
            ["train", "quickstart", "--set", "penalties.l2={uniform: [1]}"],
            "uniform takes [low, high]",
        ),
    ],
)
def test_error_text_in_brackets_prints_as_written(
    args: list[str], shown: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    text = " ".join(result.output.split())
    assert text.startswith("error: ") and shown in text, text
    assert "MarkupError" not in text
