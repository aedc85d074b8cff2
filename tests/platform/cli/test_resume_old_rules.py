"""``regtune sweep SPEC --resume`` of an experiment an earlier regtune ran under
rules added since for new input: the resume is not refused by them."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from regtune.platform.cli import app
from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import write_experiment

runner = CliRunner()


def test_resume_of_an_experiment_run_before_a_new_input_rule_is_not_refused(
    tmp_path: Path,
) -> None:
    """asha with grace_period == max_epochs ran before that was refused (it stops no
    trial early); its resume was refused by the new rule, stranding the experiment."""
    spec = load_spec("quickstart").to_dict()
    spec["budget"] = {**spec["budget"], "samples": 2, "max_epochs": 3}
    curves = {f"t{i}": {"train_loss": [2.0, 1.0, 0.5], "val_loss": [2.1, 1.1, 0.6]} for i in (0, 1)}
    configs = {f"t{i}": {"penalties": {"l2": 1e-5 * (i + 1)}} for i in (0, 1)}
    stored = {**spec, "scheduler": {"kind": "asha", "grace_period": 3, "reduction_factor": 2}}
    write_experiment(str(tmp_path / "old"), curves, configs, spec=stored, max_t=3)
    file = tmp_path / "old.yaml"
    file.write_text(yaml.safe_dump(stored))
    args = ["sweep", str(file), "--storage", str(tmp_path), "--name", "old"]

    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "nothing left to resume" in resumed.stderr
    # As new input the same file is still refused, naming the rule.
    fresh = runner.invoke(app, [*args[:2], "--storage", str(tmp_path / "new")])
    assert fresh.exit_code == 2
    assert "scheduler asha would stop no trial early" in fresh.output
