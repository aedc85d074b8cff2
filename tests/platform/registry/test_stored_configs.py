"""Configs an earlier regtune stored stay readable: before early stopping's
``mode`` followed its metric, a dump held the old default ``mode: min`` also for
``val_acc``, which a config given now is refused for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regtune.errors import SpecError
from regtune.platform.registry import Member, load_version, save_version
from regtune.platform.registry.integrity import DIGEST_KEY, meta_digest
from regtune.platform.registry.quantize import quantize_version
from regtune.trainables.config import parse_train_config
from regtune.trainables.loop import RunResult

OLD_EARLY = {"metric": "val_acc", "mode": "min", "patience": 1, "min_delta": 0.0}


def _old_dump(run: RunResult) -> dict:
    config = run.config.model_dump(mode="json")
    config["training"]["early_stopping"] = dict(OLD_EARLY)
    return config


def test_an_old_dump_is_read_back_with_its_mode_following_the_metric(
    tiny_run: RunResult,
) -> None:
    old = _old_dump(tiny_run)
    # Given now, the contradiction is refused at its key ...
    with pytest.raises(SpecError, match=r"training.early_stopping.mode: mode 'min' contradicts"):
        parse_train_config(old)
    # ... read back from storage, the mode regtune wrote is dropped.
    early = parse_train_config(old, stored=True).training.early_stopping
    assert (early.metric, early.mode, early.patience) == ("val_acc", "max", 1)
    assert old["training"]["early_stopping"]["mode"] == "min"  # the input is not changed
    # A mode that agrees, and every other key, is read as given.
    agreeing = _old_dump(tiny_run)
    agreeing["training"]["early_stopping"]["metric"] = "val_loss"
    assert parse_train_config(agreeing, stored=True) == parse_train_config(agreeing)


def test_an_old_dump_with_early_stopping_on_a_metric_it_never_measured_is_read_back(
    tiny_run: RunResult,
) -> None:
    """An earlier regtune ran early stopping on robust_acc with robust_every 0 (it
    then never acted); a config given now is refused, a stored one reads as it ran."""
    old = tiny_run.config.model_dump(mode="json")
    old["training"]["robust_every"] = 0
    old["training"]["early_stopping"] = {"metric": "robust_acc", "mode": "max", "patience": 2}
    with pytest.raises(SpecError, match=r"training.early_stopping.metric"):
        parse_train_config(old)
    early = parse_train_config(old, stored=True).training.early_stopping
    assert (early.metric, early.patience) == ("robust_acc", 2)


def test_a_version_of_old_trials_is_published_and_quantized(
    tiny_run: RunResult, tmp_path: Path
) -> None:
    member = Member(config=_old_dump(tiny_run), state=tiny_run.model.state_dict())
    root = str(tmp_path / "registry")
    mv = save_version("old", [member], tiny_run.dataset, metrics={"test_acc": 0.0}, root=root)
    # A version written now stores the config as this regtune reads it ...
    meta_file = Path(mv.path) / "meta.json"
    meta = json.loads(meta_file.read_text())
    assert meta["configs"][0]["training"]["early_stopping"]["mode"] == "max"
    # ... one an earlier regtune wrote holds the old default: still quantized.
    meta["configs"][0]["training"]["early_stopping"] = dict(OLD_EARLY)
    meta.pop(DIGEST_KEY)
    meta[DIGEST_KEY] = meta_digest(meta)
    meta_file.write_text(json.dumps(meta))
    assert (
        load_version("old:1", root=root).meta["configs"][0]["training"]["early_stopping"]["mode"]
        == "min"
    )
    q = quantize_version("old:1", root=root)
    assert q.version == 2 and q.quantized
