"""Promotion, distillation and quantization refuse a model whose data changed, alike;
a quantized copy records when and by which code it was written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from regtune.errors import CheckpointError
from regtune.platform.registry import ModelVersion, load_version
from regtune.platform.registry.distill import DistillSettings, distill
from regtune.platform.registry.integrity import DIGEST_KEY, meta_digest
from regtune.platform.registry.promote import promote
from regtune.platform.registry.quantize import quantize_version
from regtune.platform.registry.version import creation_record
from regtune.platform.tune.trial_files import STATE_DIR
from regtune.trainables.checkpoint import TREE_FILE

#: The one message every door gives (registry.version.DATASET_CHANGED).
CHANGED = r"with fingerprint 0123456789ab, but the dataset loads now with fingerprint [0-9a-f]{12}"
OLD_FINGERPRINT = "0123456789ab" + "0" * 52


def _tampered(version: ModelVersion, target: Path, change: Callable[[dict[str, Any]], None]) -> str:
    """A copy of ``version`` whose meta.json ``change`` edited, with its hash recomputed."""
    shutil.copytree(version.path, target)
    meta = json.loads((target / "meta.json").read_text())
    change(meta)
    meta[DIGEST_KEY] = meta_digest(meta)
    (target / "meta.json").write_text(json.dumps(meta))
    return str(target)


def _old_data(meta: dict[str, Any]) -> None:
    meta["dataset"]["fingerprint"] = OLD_FINGERPRINT


def test_quantize_refuses_a_version_whose_data_changed(
    tiny_version: ModelVersion, tmp_path: Path, registry: str
) -> None:
    path = _tampered(tiny_version, tmp_path / "old", _old_data)
    with pytest.raises(
        CheckpointError,
        match=rf"version tiny:1 \({path}\) was trained on dataset 'digits' {CHANGED}",
    ):
        quantize_version(path, name="q", root=registry)
    assert not (Path(registry) / "q").exists()


def test_distill_refuses_a_teacher_whose_data_changed(
    tiny_version: ModelVersion, tmp_path: Path, registry: str
) -> None:
    path = _tampered(tiny_version, tmp_path / "old", _old_data)
    # Refused before Ray is started or anything is trained.
    with pytest.raises(CheckpointError, match=rf"teacher tiny:1 \({path}\) was .* {CHANGED}"):
        distill(path, DistillSettings(epochs=1), name="student", root=registry)
    assert not (Path(registry) / "student").exists()


def test_promote_refuses_a_trial_whose_data_changed(early_experiment: Path, registry: str) -> None:
    tree_file = early_experiment / "trial_early" / "checkpoint_000000" / STATE_DIR / TREE_FILE
    tree = json.loads(tree_file.read_text())
    tree["tree"]["fingerprint"] = OLD_FINGERPRINT
    tree_file.write_text(json.dumps(tree))
    with pytest.raises(CheckpointError, match=rf"trial early was trained on .*{CHANGED}"):
        promote(
            str(early_experiment),
            name="m",
            top_k=1,
            objectives=[("val_loss", "min")],
            root=registry,
        )
    assert not Path(registry).exists()


def test_a_quantized_copy_records_its_own_creation(
    tiny_version: ModelVersion, tmp_path: Path, registry: str
) -> None:
    def old_code(meta: dict[str, Any]) -> None:
        meta["created_at"] = "2001-01-01T00:00:00+00:00"
        meta["code"] = {"regtune": "0.0.1", "torch": "1.0", "git": "f" * 40}

    path = _tampered(tiny_version, tmp_path / "old", old_code)
    copy = quantize_version(path, name="q", root=registry)
    now = creation_record()
    assert copy.meta["code"] == now["code"]
    assert copy.meta["created_at"][:10] == now["created_at"][:10] != "2001-01-01"
    assert load_version("q:1", root=registry).meta["lineage"]["quantized_from"] == "tiny:1"
