"""``regtune promote`` with a metric that has no finite value: --json stays valid JSON
(null), and the gate table says the gate fails for lack of a value, not "by 0"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from regtune.platform.cli import app
from regtune.platform.registry import promote as promote_module
from regtune.platform.registry.gates import check_gates, parse_gates
from regtune.platform.registry.promote import Promotion
from regtune.platform.registry.trials import SweepTrial

runner = CliRunner()
NAN = float("nan")


@pytest.fixture
def nan_promotion(monkeypatch: pytest.MonkeyPatch) -> None:
    """``promote`` answers an ensemble whose test_loss is NaN and whose loss gate failed."""
    metrics = {"test_acc": 0.43, "test_loss": NAN, "gap": NAN}
    trial = SweepTrial("t0", Path("t0"), {}, {"val_acc": 0.85}, Path("c"), 4)
    result = Promotion(
        experiment="/x/plain",
        objectives=[("val_acc", "max")],
        members=[trial],
        metrics=metrics,
        gates=check_gates(parse_gates(["test_loss<=1", "test_acc>=0.4"]), metrics),
    )

    def fake(*args: Any, **kwargs: Any) -> Promotion:
        return result

    monkeypatch.setattr(promote_module, "promote", fake)


def test_json_holds_null_for_a_nan_metric(nan_promotion: None) -> None:
    shown = runner.invoke(app, ["promote", "plain", "--name", "m", "--json"])
    assert shown.exit_code == 1, shown.output  # a gate failed
    payload = json.loads(shown.stdout, parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    assert payload["metrics"]["test_loss"] is None and payload["metrics"]["test_acc"] == 0.43
    assert payload["gates"][0] == {
        "gate": "test_loss<=1",
        "value": None,
        "passed": False,
        "shortfall": 0.0,
    }


def test_gate_table_says_no_finite_value_not_fails_by_0(nan_promotion: None) -> None:
    shown = runner.invoke(app, ["promote", "plain", "--name", "m"])
    assert shown.exit_code == 1, shown.output
    text = shown.stdout
    assert "fails (no finite value)" in text
    assert "fails by 0" not in text
    assert "holds" in text  # the accuracy gate
