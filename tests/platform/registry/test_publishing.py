"""Publishing on local disk: folder modes, leftovers of dead writers, non-finite numbers."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import pytest
import torch

from regtune.errors import CheckpointError
from regtune.platform.registry import (
    Member,
    ModelVersion,
    list_versions,
    load_version,
    save_version,
)
from regtune.platform.registry import version as version_module
from regtune.platform.registry.version import write_version
from regtune.trainables.loop import RunResult


def _member(run: RunResult) -> Member:
    return Member.from_model(run.config, run.model, trial_id="t0")


@pytest.mark.parametrize(
    ("umask", "folder", "file"), [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)]
)
def test_a_published_version_honours_the_umask(
    tiny_run: RunResult, registry: str, umask: int, folder: int, file: int
) -> None:
    old = os.umask(umask)
    try:
        mv = save_version("tiny", [_member(tiny_run)], tiny_run.dataset, root=registry)
    finally:
        os.umask(old)
    path = Path(mv.path)
    assert stat.S_IMODE(path.stat().st_mode) == folder
    for name in ("meta.json", "weights.safetensors"):
        assert stat.S_IMODE((path / name).stat().st_mode) == file


def test_a_leftover_unpublished_folder_does_not_block_later_versions(
    tiny_run: RunResult, registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Few tries, so a writer that kept retrying the same number fails fast.
    monkeypatch.setattr(version_module, "MAX_CLAIMS", 3)
    metrics = {"test_acc": 0.5}
    first = save_version(
        "tiny", [_member(tiny_run)], tiny_run.dataset, metrics=metrics, root=registry
    )
    assert first.version == 1
    leftover = Path(registry) / "tiny" / "v2"  # a writer died after a partial copy
    leftover.mkdir()
    (leftover / "weights.safetensors").write_bytes(b"partial")
    second = save_version(
        "tiny", [_member(tiny_run)], tiny_run.dataset, metrics=metrics, root=registry
    )
    assert second.version == 3
    assert list_versions("tiny", root=registry) == [1, 3]
    assert (leftover / "weights.safetensors").read_bytes() == b"partial"  # left alone
    assert not [p for p in (Path(registry) / "tiny").iterdir() if p.name.startswith(".")]


def test_non_finite_metrics_are_stored_as_null_and_read_back_as_nan(
    tiny_run: RunResult, registry: str
) -> None:
    from regtune.platform.registry.gates import check_gates, parse_gates

    metrics = {"test_acc": 0.9, "test_dp_diff": math.nan, "test_ece": math.inf}
    lineage = {"teacher_metrics": {"test_acc": math.nan}}
    mv = save_version(
        "tiny",
        [_member(tiny_run)],
        tiny_run.dataset,
        metrics=metrics,
        lineage=lineage,
        root=registry,
    )
    stored = json.loads((Path(mv.path) / "meta.json").read_text())
    assert stored["metrics"] == {"test_acc": 0.9, "test_dp_diff": None, "test_ece": None}
    assert stored["lineage"]["teacher_metrics"] == {"test_acc": None}
    loaded = load_version("tiny:1", root=registry).metrics
    assert loaded["test_acc"] == 0.9
    assert math.isnan(loaded["test_dp_diff"]) and math.isnan(loaded["test_ece"])
    (gate,) = check_gates(parse_gates(["test_dp_diff<=0.1"]), loaded)
    assert not gate.passed and "no finite value" in gate.describe()


def test_a_non_finite_number_outside_the_metrics_is_refused_before_any_write(
    tiny_run: RunResult, registry: str
) -> None:
    version = save_version(
        "tiny", [_member(tiny_run)], tiny_run.dataset, metrics={"test_acc": 0.5}, root=registry
    )
    meta = dict(version.meta)
    meta["reference"] = {**meta["reference"], "n": math.nan}
    tensors = _tensors(version)
    with pytest.raises(CheckpointError, match=r"field 'reference\.n' is nan; allowed: a finite"):
        write_version("tiny", tensors, meta, root=registry)
    assert list_versions("tiny", root=registry) == [1]
    assert sorted(p.name for p in (Path(registry) / "tiny").iterdir()) == ["v1"]
    with pytest.raises(CheckpointError, match=r"field 'reference\.n' is nan"):
        write_version("other", tensors, meta, root=registry)
    assert not (Path(registry) / "other").exists()


def _tensors(version: ModelVersion) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(version.path) / "weights.safetensors"))
