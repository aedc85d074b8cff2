"""The analysis walks and merges parts as the store does: a compaction mid-read loses
no row, and a config value that changed type between parts is read, not a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

import regtune.platform.analysis.load as load_module
from regtune.platform.analysis import analyze_experiment
from regtune.platform.analysis.load import final_values, load_experiment
from regtune.platform.results import ResultsWriter, read_epochs
from regtune.platform.results.files import ResultsLocation, locate
from tests.platform.analysis.tables import HEALTHY, OVERFIT
from tests.platform.counting_fs import CountingFs


class _CompactsOnFirstRead(CountingFs):
    """Runs ``compact`` (a writer merging its parts) just before the first part is opened:
    the listing the reader holds then names parts that are gone."""

    def __init__(self, inner: pafs.FileSystem, compact: Any) -> None:
        super().__init__(inner)
        self.compact = compact
        self.compacted = 0

    def _maybe(self, path: str) -> None:
        if "/epochs/part-" in path and not self.compacted:
            self.compacted += 1
            self.compact()

    def open_input_file(self, path: str) -> Any:
        self._maybe(path)
        return super().open_input_file(path)

    def open_input_stream(self, path: str) -> Any:
        self._maybe(path)
        return super().open_input_stream(path)


def _write(writer: ResultsWriter, curves: dict[str, dict[str, list[float]]], config: Any) -> None:
    for tid, curve in curves.items():
        for i, (train, val) in enumerate(zip(curve["train_loss"], curve["val_loss"], strict=True)):
            writer.add(
                tid,
                {
                    "training_iteration": i + 1,
                    "config": config(tid, i),
                    "train_loss": train,
                    "val_loss": val,
                    "val_acc": 1.0 - val / 2.5,
                },
            )
        writer.end_trial(tid, error=False)


def test_a_compaction_mid_read_loses_no_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = str(tmp_path / "running")
    writer = ResultsWriter(exp, max_t=8, flush_s=0)  # a part per row, not merged yet
    _write(writer, {"a": HEALTHY, "b": OVERFIT}, lambda tid, i: {"l2": 0.1 if tid == "a" else 1})
    assert len(locate(exp).list_files(locate(exp).epochs)) == 16
    for read in (
        lambda: load_experiment(exp, columns=["val_acc", "config.l2"]).epochs,
        lambda: final_values(exp, "b", ["val_loss"]),
    ):
        inner = locate(exp)
        fs = _CompactsOnFirstRead(inner.fs, writer.compact)
        wrapped = ResultsLocation(pafs.PyFileSystem(fs), inner.root, inner.scheme)
        monkeypatch.setattr(load_module, "locate", lambda _exp, loc=wrapped: loc)
        result = read()
        assert fs.compacted == 1
        if isinstance(result, dict):
            assert result == {"val_loss": OVERFIT["val_loss"][-1]}
        else:
            assert len(result) == 16
        monkeypatch.undo()
        # The next read's compaction merges the parts of a fresh writer session.
        writer = ResultsWriter(exp, max_t=8, flush_s=0)
        writer.open()
        writer.add(
            "a",
            {
                "training_iteration": 8,
                "config": {"l2": 0.1},
                "train_loss": 0.09,
                "val_loss": 0.225,
                "val_acc": 0.91,
            },
        )
    assert len(read_epochs(exp)) == 16


def test_a_config_value_that_changed_type_between_parts_is_read(tmp_path: Path) -> None:
    exp = str(tmp_path / "retyped")
    writer = ResultsWriter(exp, max_t=8, flush_s=0)

    def config(tid: str, i: int) -> dict[str, Any]:
        # a: "act" was a number, then text; "bound" unset (null) at first, then a number.
        return {"act": 0.5 if i < 4 else "relu", "bound": None if i < 4 else 0.1, "l2": 0.1}

    _write(writer, {"a": HEALTHY}, config)
    writer.flush()
    for epochs in (
        read_epochs(exp),
        load_experiment(exp, columns=["val_acc", "config.act", "config.bound"]).epochs,
    ):
        assert list(epochs["config.act"]) == ["0.5"] * 4 + ["relu"] * 4
        assert epochs["config.bound"].dtype == "float64"
        assert epochs["config.bound"].isna().sum() == 4
    analysis = analyze_experiment(exp)
    assert analysis.n_trials == 1


def test_the_store_and_the_analysis_skip_the_same_parts(tmp_path: Path) -> None:
    """A part with regtune's metadata but without the fixed epoch columns is skipped by
    both readers (the analysis once took it for a part)."""
    import warnings

    import pyarrow.parquet as pq

    from regtune.platform.results import ResultsWarning

    exp = tmp_path / "mixed"
    writer = ResultsWriter(str(exp), max_t=8, flush_s=0)
    _write(writer, {"a": HEALTHY}, lambda tid, i: {"l2": 0.1})
    writer.close()
    folder = exp / "results" / "epochs"
    (good,) = folder.glob("part-*.parquet")
    stripped = folder / "part-zzzz-no-timestamp.parquet"
    pq.write_table(pq.read_table(good).drop_columns(["timestamp"]), stripped)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResultsWarning)
        assert len(read_epochs(str(exp))) == 8
    assert any(str(stripped) in str(w.message) for w in caught)
    loaded = load_experiment(str(exp), columns=["val_acc"])
    assert len(loaded.epochs) == 8
    assert any(f"{stripped}: skipped" in note and "timestamp" in note for note in loaded.notes)
