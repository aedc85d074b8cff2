"""A resumed sweep never loses the stored trial table (statuses, checkpoints)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

import regtune.platform.results.writer as writer_module
from regtune.errors import DataError
from regtune.platform.results import ResultsWarning, read_trials
from regtune.platform.results.files import ResultsLocation, locate
from regtune.platform.results.read import load_trial_states
from tests.platform.counting_fs import CountingFs
from tests.platform.results.conftest import tune_result
from tests.platform.results.test_store import _config, _metrics, _small_sweep, _writer


class _Failing(CountingFs):
    """Reading the trial table fails as storage does (not as a bad file); moves fail
    when ``fail_move``."""

    def __init__(self, inner: pafs.FileSystem, *, fail_reads: bool, fail_move: bool) -> None:
        super().__init__(inner)
        self.fail_reads = fail_reads
        self.fail_move = fail_move

    def _check(self, path: str) -> None:
        if self.fail_reads and path.endswith("trials.parquet"):
            raise ConnectionResetError(f"{path}: connection reset by peer")

    def open_input_stream(self, path: str) -> Any:
        self._check(path)
        return super().open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        self._check(path)
        return super().open_input_file(path)

    def move(self, src: str, dest: str) -> None:
        if self.fail_move:
            raise PermissionError(f"{dest}: permission denied")
        super().move(src, dest)


def _failing(
    monkeypatch: pytest.MonkeyPatch, exp: str, *, fail_reads: bool = False, fail_move: bool = False
) -> ResultsLocation:
    loc = locate(exp)
    fs = pafs.PyFileSystem(_Failing(loc.fs, fail_reads=fail_reads, fail_move=fail_move))
    failing = ResultsLocation(fs=fs, root=loc.root, scheme=loc.scheme)
    monkeypatch.setattr(writer_module, "locate", lambda _exp: failing)
    return failing


def _resume(exp: str) -> None:
    second = _writer(exp)
    second.open()
    second.add("t5", tune_result(2, _config(0.0), **_metrics(0.3)))
    second.end_trial("t5", error=False)
    second.close()


def test_a_corrupt_trial_table_is_moved_aside_not_overwritten(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    _small_sweep(exp).write_trials()
    results = tmp_path / "store" / "results"
    table = results / "trials.parquet"
    kept = table.read_bytes()
    table.write_bytes(kept[: len(kept) // 2])  # truncated: not readable as Parquet
    broken = table.read_bytes()
    with pytest.warns(ResultsWarning, match="moved to .*_trials.unreadable-") as caught:
        _resume(exp)
    assert str(table) in str(caught[0].message)
    aside = list(results.glob("_trials.unreadable-*.parquet"))
    assert len(aside) == 1 and aside[0].read_bytes() == broken  # kept, byte for byte
    trials = read_trials(exp).set_index("trial_id")  # the rebuilt table; the aside is ignored
    assert trials.loc["t5", "status"] == "stopped early"


def test_an_unreachable_trial_table_stops_the_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = str(tmp_path / "store")
    _small_sweep(exp).write_trials()
    table = tmp_path / "store" / "results" / "trials.parquet"
    before = table.read_bytes()
    loc = _failing(monkeypatch, exp, fail_reads=True)
    with pytest.raises(ConnectionResetError):
        load_trial_states(loc)
    with pytest.raises(ConnectionResetError):
        _writer(exp).open()
    assert table.read_bytes() == before
    assert not list(table.parent.glob("_trials.*"))


def test_a_trial_table_that_cannot_be_moved_aside_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = str(tmp_path / "store")
    _small_sweep(exp).write_trials()
    table = tmp_path / "store" / "results" / "trials.parquet"
    table.write_bytes(b"not parquet at all")
    _failing(monkeypatch, exp, fail_move=True)
    with pytest.raises(DataError, match="refusing to overwrite it") as info:
        _writer(exp).open()
    assert str(table) in str(info.value) and "permission denied" in str(info.value)
    assert table.read_bytes() == b"not parquet at all"


def test_readers_name_an_unreachable_trial_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import regtune.platform.results.read as read_module

    exp = str(tmp_path / "store")
    _small_sweep(exp).write_trials()
    loc = _failing(monkeypatch, exp, fail_reads=True)
    monkeypatch.setattr(read_module, "locate", lambda _exp: loc)
    with pytest.raises(DataError, match="trial table could not be read") as info:
        read_trials(exp)
    assert str(tmp_path / "store" / "results" / "trials.parquet") in str(info.value)
    assert "connection reset" in str(info.value)
