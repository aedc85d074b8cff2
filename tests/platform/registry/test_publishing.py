"""Publishing on local disk: folder modes, leftovers of dead writers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from regtune.platform.registry import Member, save_version
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
