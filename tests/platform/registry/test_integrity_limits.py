"""A version whose files are bigger than recorded, or whose meta.json is nested too deeply,
is refused naming the file, without reading it whole or crashing.

Before: a weights file grown past its recorded size (a sparse 20 GB one, or a symlink
to ``/dev/zero``) was read whole before its size was compared, so ``models list`` /
``models show`` / ``regtune.load`` ran out of memory; a meta.json of deeply nested
arrays was a RecursionError traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from regtune.errors import CheckpointError
from regtune.platform.cli import app
from regtune.platform.registry import Member, ModelVersion, load_version, save_version
from regtune.platform.registry.integrity import MAX_META_BYTES, read_verified
from regtune.platform.registry.public import load
from regtune.platform.registry.store import place_of
from regtune.trainables.loop import RunResult
from tests.platform.registry.test_meta_checks import _rewrite
from tests.platform.registry.within import within

runner = CliRunner()


@pytest.fixture(scope="module")
def saved(tiny_run: RunResult, tmp_path_factory: pytest.TempPathFactory) -> ModelVersion:
    """``tiny:1`` written once for the module (each case damages a copy of it)."""
    member = Member.from_model(tiny_run.config, tiny_run.model, trial_id="t0")
    root = str(tmp_path_factory.mktemp("registry"))
    return save_version("tiny", [member], tiny_run.dataset, root=root)


def _copy(saved: ModelVersion, storage: Path, name: str) -> Path:
    """``saved`` copied as model ``name``'s v1 under ``storage`` (meta.json renamed, re-hashed)."""
    target = storage / "registry" / name / "v1"
    target.parent.mkdir(parents=True)
    return _rewrite(saved, target, lambda meta: meta.update(name=name))


def _quickly(call: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``call()``, failing the test (not hanging it) when it does not return in ``timeout``."""
    return within(call, timeout, "still reading")


def _refusal(folder: Path) -> str:
    with pytest.raises(CheckpointError) as refused:
        _quickly(lambda: load_version(str(folder)))
    return str(refused.value)


def test_weights_one_byte_longer_are_refused_as_resized(
    saved: ModelVersion, tmp_path: Path
) -> None:
    folder = _copy(saved, tmp_path, "tiny")
    weights = folder / "weights.safetensors"
    size = weights.stat().st_size
    with open(weights, "ab") as handle:
        handle.write(b"\0")
    assert _refusal(folder) == (
        f"model version {folder}: file weights.safetensors is truncated or resized "
        f"({size + 1} bytes, expected {size}); the version is damaged, register it again"
    )


def test_a_huge_sparse_weights_file_is_refused_without_reading_it(
    saved: ModelVersion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _copy(saved, tmp_path, "tiny")
    weights = folder / "weights.safetensors"
    size = weights.stat().st_size
    os.truncate(weights, 20 * 1024**3)  # sparse: 20 GB on paper, nothing on disk
    reads: list[int | None] = []
    place_type = type(place_of(str(folder)))
    original = place_type.read

    def spy(self: Any, name: str, limit: int | None = None) -> bytes | None:
        reads.append(limit)
        return original(self, name, limit)

    monkeypatch.setattr(place_type, "read", spy)
    message = _refusal(folder)
    assert f"is truncated or resized ({20 * 1024**3} bytes, expected {size})" in message
    assert reads == [MAX_META_BYTES + 1, size + 1]  # nothing read past its recorded size
    with pytest.raises(CheckpointError, match="is truncated or resized"):
        _quickly(lambda: load(str(folder)))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_weights_linked_to_dev_zero_are_refused_at_once(
    saved: ModelVersion, tmp_path: Path
) -> None:
    folder = _copy(saved, tmp_path, "tiny")
    (folder / "weights.safetensors").unlink()
    (folder / "weights.safetensors").symlink_to("/dev/zero")
    assert _refusal(folder) == (
        f"model version {folder}: file weights.safetensors cannot be read "
        "(path is not a regular file (a device, FIFO or socket))"
    )


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_meta_linked_to_dev_zero_is_refused_at_once(saved: ModelVersion, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path, "tiny")
    (folder / "meta.json").unlink()
    (folder / "meta.json").symlink_to("/dev/zero")
    _refusal(folder)  # load_version: "not a model version directory (no meta.json)"
    with pytest.raises(CheckpointError) as refused:
        _quickly(lambda: read_verified(place_of(str(folder))))
    assert str(refused.value) == (
        f"model version {folder}: file meta.json cannot be read "
        "(path is not a regular file (a device, FIFO or socket))"
    )


def test_a_meta_json_past_the_limit_is_refused_unread(
    saved: ModelVersion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _copy(saved, tmp_path, "tiny")
    size = (folder / "meta.json").stat().st_size
    monkeypatch.setattr("regtune.platform.registry.integrity.MAX_META_BYTES", size - 1)
    with pytest.raises(CheckpointError) as refused:
        read_verified(place_of(str(folder)))
    assert str(refused.value) == (
        f"model version {folder}: file meta.json cannot be read (larger than {size - 1} bytes)"
    )


@pytest.mark.parametrize("depth", [100_000, 5_000])
def test_a_deeply_nested_meta_json_is_refused_naming_it(
    saved: ModelVersion, tmp_path: Path, depth: int
) -> None:
    folder = _copy(saved, tmp_path, "tiny")
    (folder / "meta.json").write_text("[" * depth + "]" * depth)
    expected = (
        f"model version {folder}: file meta.json cannot be read "
        "(arrays or objects nested too deeply)"
    )
    assert _refusal(folder) == expected
    with pytest.raises(CheckpointError) as refused:
        load(str(folder))
    assert str(refused.value) == expected


def test_models_list_marks_oversized_and_nested_versions_and_lists_the_rest(
    saved: ModelVersion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regtune.platform.cli.app import out

    monkeypatch.setattr(out, "width", 200)
    _copy(saved, tmp_path, "good")
    huge = _copy(saved, tmp_path, "huge") / "weights.safetensors"
    size = huge.stat().st_size
    os.truncate(huge, 20 * 1024**3)
    (_copy(saved, tmp_path, "nested") / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    storage = str(tmp_path)

    show = _quickly(lambda: runner.invoke(app, ["models", "show", "huge", "--storage", storage]))
    assert show.exit_code == 2, (show.output, show.exception)
    assert "Traceback" not in show.output
    assert f"({20 * 1024**3} bytes, expected {size})" in show.stderr

    result = _quickly(lambda: runner.invoke(app, ["models", "list", "--storage", storage]))
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if ":1" in line}
    assert set(rows) == {"good:1", "huge:1", "nested:1"}
    assert "(damaged)" not in rows["good:1"]
    assert "(damaged)" in rows["huge:1"] and "(damaged)" in rows["nested:1"]
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith("error: huge:1 is damaged: ")
    assert "weights.safetensors is truncated or resized" in errors[0]
    assert errors[1].startswith("error: nested:1 is damaged: ")
    assert errors[1].endswith("meta.json cannot be read (arrays or objects nested too deeply)")
