"""Publishing on local disk: folder modes, leftovers of dead writers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from regtune.platform.registry import Member, list_versions, save_version
from regtune.platform.registry import version as version_module
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
