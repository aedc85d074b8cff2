"""``regtune models list`` at 80 columns and wide, and ``--help`` at 80 columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from regtune.platform.cli import app

if TYPE_CHECKING:
    from regtune.trainables.data import Dataset

runner = CliRunner()
LONG_NAME = "digits-l2-ensemble-long"


@pytest.fixture(scope="module")
def storage(digits: Dataset, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A storage root whose registry holds ``digits`` (versions 1, 2) and ``LONG_NAME`` (1)."""
    from regtune.platform.registry import Member, save_version
    from regtune.trainables.loop import train

    root = tmp_path_factory.mktemp("runs")
    config = {"dataset": "digits", "model": {"arch": "mlp", "width": 8, "depth": 1},
              "training": {"epochs": 1, "robust_every": 0}}  # fmt: skip
    model = train(config, dataset=digits, device="cpu").model
    for name in ("digits", LONG_NAME, "digits"):
        save_version(name, [Member.from_model(config, model)], digits, root=str(root / "registry"))
    return str(root)


def test_list_fits_80_columns_without_cutting_a_cell_and_is_full_when_wide(
    storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regtune.platform.cli.app import out

    # The console's width, not $COLUMNS: rich reads $COLUMNS once, when the console is
    # made, and pytest-xdist's workers export COLUMNS=80 before it is.
    monkeypatch.setattr(out, "width", 80)
    narrow = runner.invoke(app, ["models", "list", "--storage", storage])
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    assert "…" not in narrow.stdout
    assert "digits:2" in narrow.stdout and f"{LONG_NAME}:1" in narrow.stdout
    assert "test_acc" in narrow.stdout
    assert "not shown at this width" in narrow.stdout and "size_bytes" in narrow.stdout

    monkeypatch.setattr(out, "width", 200)
    wide = runner.invoke(app, ["models", "list", "--storage", storage])
    assert wide.exit_code == 0, wide.output
    header = next(line for line in wide.stdout.splitlines() if "model" in line and "kind" in line)
    for column in ("versions", "created", "test_acc", "test_ece", "test_dp_diff", "gap",
                   "size_bytes"):  # fmt: skip
        assert column in header
    assert "not shown" not in wide.stdout
    listed = json.loads(
        runner.invoke(app, ["models", "list", "--storage", storage, "--json"]).stdout
    )
    assert [m["name"] for m in listed["models"]] == sorted(["digits", LONG_NAME])


def test_list_of_an_empty_registry_says_so(tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "list", "--storage", str(tmp_path / "typo")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"no models registered under {tmp_path / 'typo' / 'registry'}"


@pytest.mark.parametrize(
    ("command", "flag", "option"),
    [
        (["presets"], "--names", None),
        (["train"], "--json", "--checkpoint-dir <path>"),
        (["analyze"], "--json", "--include-degenerate / --no-include-degenerate"),
        (["models", "list"], "--json", "--storage <str>"),
        (["serve"], "--once", "--set KEY=VALUE"),
    ],
)
def test_help_at_80_columns_shows_flags_bare_and_options_whole(
    command: list[str], flag: str, option: str | None
) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "…" not in result.output
    assert max(map(len, result.output.splitlines())) <= 80
    (line,) = [line for line in result.output.splitlines() if line.strip().startswith(flag)]
    assert line.split()[0] == flag and not line.split()[1].startswith("<")
    if option is not None:
        assert option in result.output
