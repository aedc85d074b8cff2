"""``regtune presets``: every preset with its one-line description."""

from __future__ import annotations

from typer.testing import CliRunner

from regtune.platform.cli import app
from regtune.search_spaces import list_presets, load_spec

runner = CliRunner()


def test_presets_lists_each_preset_with_its_description() -> None:
    result = runner.invoke(app, ["presets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["preset", "description"]
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in lines[1:] if line.strip()}
    assert list(rows) == list_presets()
    for name, text in rows.items():
        assert text == load_spec(name).description


def test_presets_names_prints_only_names() -> None:
    result = runner.invoke(app, ["presets", "--names"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == list_presets()


def test_a_misspelt_preset_on_the_command_line_gets_a_suggestion() -> None:
    result = runner.invoke(app, ["train", "quickstrat"])
    assert result.exit_code == 2
    assert "did you mean 'quickstart'?" in result.output
