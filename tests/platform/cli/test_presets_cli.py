"""``regtune presets`` (every preset with its one-line description), and preset
and spec mistakes caught on the command line before anything runs."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from regtune.platform.cli import app
from regtune.search_spaces import list_presets, load_spec, preset_path

runner = CliRunner()


def test_presets_lists_each_preset_with_its_description() -> None:
    result = runner.invoke(app, ["presets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["preset", "description"]
    # A description longer than the terminal wraps onto indented lines.
    rows: dict[str, str] = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[0].isspace():
            rows[next(reversed(rows))] += " " + line.strip()
        else:
            name, *words = line.split()
            rows[name] = " ".join(words)
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


def test_a_missing_data_file_stops_a_sweep_before_ray(tmp_path: Path) -> None:
    # Any preset pointed at a user file: the file is checked with the spec.
    raw = yaml.safe_load(preset_path("quickstart").read_text(encoding="utf-8"))
    raw["dataset"] = {"name": "csv", "path": "data/absent.csv", "label": "y"}
    spec = tmp_path / "mine.yaml"
    spec.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(app, ["sweep", str(spec)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert f"dataset.path: {tmp_path / 'data' / 'absent.csv'}: file not found" in result.output
    assert "Ray" not in result.output and "trials" not in result.output
