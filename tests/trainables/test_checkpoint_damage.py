"""A damaged checkpoint ``state.json`` is refused when it is read: one
CheckpointError naming the file, the field, what it holds and what is allowed
(``regtune train --resume``: one ``error:`` line, exit 2), and nothing stored
is changed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from regtune.errors import CheckpointError
from regtune.platform.cli import app
from regtune.trainables.checkpoint import TENSORS_FILE, TREE_FILE, load_tree
from regtune.trainables.data import Dataset
from regtune.trainables.loop import Trainer

EPOCHS = 2
CONFIG: dict[str, Any] = {
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 16, "depth": 1},
    "training": {"epochs": EPOCHS, "robust_every": 0},
}

runner = CliRunner()


@pytest.fixture(scope="module")
def good(digits: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint after 1 of 2 epochs (written once for the module)."""
    trainer = Trainer(CONFIG, dataset=digits)
    trainer.run_epoch()
    return trainer.save(tmp_path_factory.mktemp("good") / "ckpt")


def _damaged(good: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of ``good`` with its state.json edited by ``edit`` (on the whole file)."""
    ckpt = Path(shutil.copytree(good, tmp_path / "ckpt"))
    skeleton = json.loads((ckpt / TREE_FILE).read_text())
    edit(skeleton)
    (ckpt / TREE_FILE).write_text(json.dumps(skeleton))
    return ckpt


def _files(ckpt: Path) -> dict[str, bytes]:
    return {name: (ckpt / name).read_bytes() for name in (TENSORS_FILE, TREE_FILE)}


def _tree(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(skeleton: dict[str, Any]) -> None:
        skeleton["tree"][key] = value

    return edit


def _set(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def edit(skeleton: dict[str, Any]) -> None:
        skeleton.update(fields)

    return edit


def _row(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(skeleton: dict[str, Any]) -> None:
        row = skeleton["tree"]["history"][0]
        if value is None:
            del row[key]
        else:
            row[key] = value

    return edit


def _early(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(skeleton: dict[str, Any]) -> None:
        skeleton["tree"]["early"][key] = value

    return edit


# The reviewer's five damages: (edit, field, what it holds, a fragment of what is allowed).
REPORTED = {
    "epoch-word": (_tree("epoch", "two"), "tree.epoch", "'two'", "a whole number from 0 to 2"),
    "config-int": (_tree("config", 5), "tree.config", "5", "a mapping"),
    "history-int": (_tree("history", 5), "tree.history", "5", "a list of 1 rows"),
    "epoch-negative": (_tree("epoch", -5), "tree.epoch", "-5", "a whole number from 0 to 2"),
    "format-7": (_set(format_version=7), "format_version", "7", "1 (the only checkpoint format"),
}
# More fields the resume reads.
MORE = {
    "epoch-past-the-end": (_tree("epoch", 3), "tree.epoch", "3", "from 0 to 2"),
    "epoch-bool": (_tree("epoch", True), "tree.epoch", "True", "a whole number"),
    "format-missing": (
        lambda s: s.pop("format_version"),
        "format_version",
        "nothing (the field is missing)",
        "1 (the only checkpoint format",
    ),
    "tree-list": (_set(tree=[1]), "tree", "[1]", "a mapping"),
    "history-too-long": (
        lambda s: s["tree"]["history"].append(s["tree"]["history"][0]),
        "tree.history",
        "[{",
        "a list of 1 rows (tree.epoch)",
    ),
    "row-not-mapping": (_tree("history", ["row"]), "tree.history[0]", "'row'", "a mapping"),
    "row-without-train-loss": (
        _row("train_loss", None),
        "tree.history[0].train_loss",
        "nothing (the field is missing)",
        "train_loss",
    ),
    "row-text-value": (_row("val_acc", "high"), "tree.history[0]", "a mapping", "numbers"),
    "row-wrong-epoch": (_row("epoch", 4.0), "tree.history[0].epoch", "4.0", "1 (its row's"),
    "early-mode": (_early("mode", "sideways"), "tree.early.mode", "'sideways'", "'min' or 'max'"),
    "early-extra": (_early("colour", 1), "tree.early.colour", "1", "only the fields metric"),
    "early-best-epoch": (_early("best_epoch", 9), "tree.early.best_epoch", "9", "0 to 1"),
    "config-training-lr": (
        lambda s: s["tree"]["config"]["training"].update(lr="fast"),
        "tree.config.training.lr",
        "'fast'",
        "a positive number",
    ),
    "thresholds-int": (_tree("thresholds", 5), "tree.thresholds", "5", "null or a 1-d"),
    "robust-text": (_tree("robust", "x"), "tree.robust", "'x'", "null or [robust accuracy"),
    "generator-int": (_tree("generator", 1), "tree.generator", "1", "a uint8 tensor"),
    "model-list": (_tree("model", []), "tree.model", "[]", "a mapping of parameter names"),
}


@pytest.mark.parametrize("case", [*REPORTED, *MORE])
def test_a_damaged_field_is_named_and_nothing_changes(
    good: Path, tmp_path: Path, digits: Dataset, case: str
) -> None:
    edit, field, holds, allowed = {**REPORTED, **MORE}[case]
    ckpt = _damaged(good, tmp_path, edit)
    before = _files(ckpt)
    trainer = Trainer(CONFIG, dataset=digits)
    with pytest.raises(CheckpointError) as info:
        trainer.restore(ckpt)
    message = str(info.value)
    assert message.startswith(f"checkpoint {ckpt}: {TREE_FILE} field {field!r} holds {holds}")
    assert allowed in message.split("; allowed: ", 1)[1]
    assert trainer.epoch == 0 and trainer.history == []  # nothing was restored
    assert _files(ckpt) == before


def test_the_good_checkpoint_restores(good: Path, digits: Dataset) -> None:
    """The checks accept what the trainer writes (the fixture is not damaged already)."""
    trainer = Trainer(CONFIG, dataset=digits)
    trainer.restore(good)
    assert trainer.epoch == 1 and len(trainer.history) == 1
    assert load_tree(good)["epoch"] == 1


def test_a_finished_run_restores(digits: Dataset, tmp_path: Path) -> None:
    """epoch == training.epochs (the upper end) with early stopping and fitted
    temperatures stored: still a valid checkpoint."""
    cfg = {
        **CONFIG,
        "training": {
            **CONFIG["training"],
            "calibration": "temperature",
            "early_stopping": {"patience": 1},
        },
    }
    trainer = Trainer(cfg, dataset=digits)
    while not trainer.should_stop:
        trainer.run_epoch()
    trainer.finish()
    ckpt = trainer.save(tmp_path / "done")
    again = Trainer(cfg, dataset=digits)
    again.restore(ckpt)
    assert again.epoch == trainer.epoch and again.should_stop
    assert again.history == trainer.history


@pytest.mark.parametrize("case", list(REPORTED))
def test_cli_resume_prints_one_line_and_exits_2(
    good: Path, tmp_path: Path, data_cache: Path, case: str
) -> None:
    edit, field, holds, _ = REPORTED[case]
    ckpt = _damaged(good, tmp_path, edit)
    before = _files(ckpt)
    spec = tmp_path / "ck.yaml"
    spec.write_text(yaml.safe_dump(CONFIG))
    # A changed setting too: the resume check must not compare a damaged config
    # (it printed "5 -> None, dataset.name None -> 'digits', ..." before the error).
    args = ["train", str(spec), "--checkpoint-dir", str(ckpt), "--resume"]
    result = runner.invoke(app, [*args, "--set", "penalties.l2=0.5"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    # The dataset's description, then the error as one line, the last.
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: checkpoint {ckpt}: "), result.stderr
    assert f"{TREE_FILE} field {field!r} holds {holds}; allowed: " in message
    assert "epoch -4/" not in result.output
    # Warned about only when the stored config and epoch can be read as such.
    assert "dataset.name None" not in result.output and "trained for -5" not in result.output
    assert _files(ckpt) == before


def test_kept_weights_that_do_not_fit_the_model_are_named(
    good: Path, tmp_path: Path, digits: Dataset
) -> None:
    """best_state (the weights finish() keeps) must have this model's names and shapes."""

    def swap(skeleton: dict[str, Any]) -> None:
        model = skeleton["tree"]["model"]
        first, last = next(iter(model)), list(model)[-1]
        skeleton["tree"]["best_state"] = {**model, first: model[last]}

    def drop(skeleton: dict[str, Any]) -> None:
        model = skeleton["tree"]["model"]
        skeleton["tree"]["best_state"] = {k: v for k, v in list(model.items())[1:]}

    names = list(Trainer(CONFIG, dataset=digits).model.state_dict())
    for edit, holds in ((swap, "a torch.float32 tensor of shape"), (drop, "nothing")):
        ckpt = _damaged(good, tmp_path / edit.__name__, edit)
        with pytest.raises(CheckpointError) as info:
            Trainer(CONFIG, dataset=digits).restore(ckpt)
        assert f"field 'tree.best_state.{names[0]}' holds {holds}" in str(info.value)
        assert "allowed: " in str(info.value)


def test_a_checkpoint_restores_into_another_fairness_kind(tmp_path: Path) -> None:
    """PBT (or --resume --set) may move penalties.fairness.kind between dp and eo:
    the stored multipliers belong to other constraints, so they start again from
    zero, where the same kind keeps them."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.normal(size=n), "g": rng.choice(["f", "m"], n)}
    )
    frame["y"] = ((frame.a + 0.5 * (frame.g == "m") + rng.normal(scale=0.5, size=n)) > 0).astype(
        int
    )
    frame.to_csv(tmp_path / "d.csv", index=False)
    fairness = {"kind": "dp", "method": "lagrangian", "strength": 1.0, "bound": 0.01, "margin": 0.0}
    dp = {
        "dataset": {"name": "csv", "path": str(tmp_path / "d.csv"), "label": "y", "sensitive": "g"},
        "model": {"arch": "mlp", "width": 8, "depth": 1},
        "training": {"epochs": 3, "robust_every": 0},
        "penalties": {"fairness": fairness},
    }
    donor = Trainer(dp)
    donor.run_epoch()
    state = donor.state_dict()
    assert state["multipliers"].shape == (2,) and bool(state["multipliers"].abs().sum() > 0)
    eo = {**dp, "penalties": {"fairness": {**fairness, "kind": "eo"}}}
    moved = Trainer(eo)
    moved.load_state_dict(state, source="donor")
    assert moved._multipliers.tolist() == [0.0, 0.0, 0.0, 0.0]
    while not moved.should_stop:
        moved.run_epoch()
    assert moved.epoch == 3
    same = Trainer(dp)
    same.load_state_dict(state, source="donor")
    assert same._multipliers.tolist() == state["multipliers"].tolist()


def test_multipliers_of_the_same_kind_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    """Only another fairness kind resets the multipliers; under the same kind a
    stored tensor of another length is damage, and is named."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=200), "g": rng.choice(["f", "m"], 200)})
    frame["y"] = (frame.a > 0).astype(int)
    frame.to_csv(tmp_path / "d.csv", index=False)
    cfg = {
        "dataset": {"name": "csv", "path": str(tmp_path / "d.csv"), "label": "y", "sensitive": "g"},
        "model": {"arch": "mlp", "width": 4, "depth": 1},
        "training": {"epochs": 2, "robust_every": 0},
        "penalties": {
            "fairness": {"kind": "dp", "method": "lagrangian", "strength": 1.0, "bound": 0.01}
        },
    }
    donor = Trainer(cfg)
    donor.run_epoch()
    state = {**donor.state_dict(), "multipliers": torch.zeros(5)}
    with pytest.raises(CheckpointError, match=r"'tree.multipliers' holds .*shape \(2,\)"):
        Trainer(cfg).load_state_dict(state, source="donor")
