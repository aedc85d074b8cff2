"""The writer's trial table: kept up to date cheaply, exact where resume needs it.

A trial end no longer rewrites the table; Tune saving its experiment state
(``save_state``) and ``close`` do. The table is rebuilt incrementally and must
equal a rebuild of every row; merged parts keep the latest row per epoch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import regtune.platform.results.writer as writer_module
from regtune.platform.results import read_epochs, read_trials
from regtune.platform.results.files import locate
from regtune.platform.results.read import load_trial_states
from regtune.platform.results.schema import (
    FIXED_TRIAL_COLUMNS,
    KIND_TRIALS,
    META_KIND,
    META_RUN_S,
    rows_to_table,
)
from regtune.platform.results.writer import ResultsWriter, latest_rows, replace_rows
from tests.platform.results.conftest import tune_result
from tests.platform.results.test_store import _config, _metrics, _writer

MAX_T = 3  # the spec of _writer runs 3 epochs


def _stored(exp: str) -> pa.Table:
    return pq.read_table(f"{exp}/results/trials.parquet")


def _statuses(exp: str) -> dict[str, tuple[str, str | None]]:
    table = _stored(exp).to_pylist()
    return {r["trial_id"]: (r["status"], r["checkpoint"]) for r in table}


def _run(w: ResultsWriter, tid: str, epochs: int, acc: float = 0.5) -> None:
    for i in range(1, epochs + 1):
        w.add(tid, tune_result(i, _config(1e-4), **_metrics(acc + 0.01 * i)))


def test_a_trial_end_waits_for_tunes_snapshot_which_stores_status_and_checkpoint(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "store")
    w = _writer(exp)
    _run(w, "t1", 3)
    w.flush()  # the table exists, t1 running
    assert _statuses(exp) == {"t1": ("running", None)}
    w.checkpoint("t1", "/ckpt/t1/3")
    w.end_trial("t1", error=False)
    _run(w, "t2", 1)
    assert _statuses(exp)["t1"] == ("running", None)  # throttled: not rewritten per trial end
    w.save_state()
    assert _statuses(exp) == {"t1": ("finished", "/ckpt/t1/3"), "t2": ("running", None)}
    # Nothing changed since: the snapshot does not rewrite it (at most every 10 s).
    before = (tmp_path / "store" / "results" / "trials.parquet").stat().st_mtime_ns
    w.save_state()
    assert (tmp_path / "store" / "results" / "trials.parquet").stat().st_mtime_ns == before


def test_a_killed_driver_keeps_everything_tune_had_saved_and_a_resume_finishes_it(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "store")
    w = _writer(exp)
    _run(w, "t1", 3)
    w.end_trial("t1", error=False, checkpoint="/ckpt/t1")
    _run(w, "t2", 2)
    w.end_trial("t2", error=False)  # stopped early
    w.add("t3", tune_result(1, _config(1e-4), **_metrics(0.3)))
    w.end_trial("t3", error=True)
    _run(w, "t4", 2)
    w.checkpoint("t4", "/ckpt/t4/2")
    w.save_state()  # Tune's snapshot: everything above is promised
    _run(w, "t5", 1)  # after the snapshot: Tune reruns it on resume
    del w  # the driver is killed: no close
    assert _statuses(exp) == {
        "t1": ("finished", "/ckpt/t1"),
        "t2": ("stopped early", None),
        "t3": ("error", None),
        "t4": ("running", "/ckpt/t4/2"),
    }
    states = load_trial_states(locate(exp)).states  # what a resumed writer starts from
    assert states["t4"].checkpoint == "/ckpt/t4/2"
    epochs = read_epochs(exp)
    assert set(zip(epochs["trial_id"], epochs["iteration"], strict=True)) >= {
        ("t1", 1), ("t1", 2), ("t1", 3), ("t2", 1), ("t2", 2), ("t3", 1), ("t4", 1), ("t4", 2),
    }  # fmt: skip
    # --resume: t4 continues from its epoch-2 checkpoint, t5 starts over.
    second = _writer(exp)
    second.open()
    w4 = tune_result(3, _config(1e-4), **_metrics(0.4))  # worse than its epoch 2
    second.add("t4", w4)
    second.end_trial("t4", error=False, checkpoint="/ckpt/t4/3")
    _run(second, "t5", 3)
    second.close({"t5": second.ended_state("t5", error=False, checkpoint="/ckpt/t5")})
    assert _statuses(exp) == {
        "t1": ("finished", "/ckpt/t1"),
        "t2": ("stopped early", None),
        "t3": ("error", None),
        "t4": ("finished", "/ckpt/t4/3"),
        "t5": ("finished", "/ckpt/t5"),
    }
    stored = {r["trial_id"]: r for r in _stored(exp).to_pylist()}
    assert stored["t4"]["iterations"] == 3
    assert stored["t4"]["best.val_acc"] == pytest.approx(0.52)  # session one's epoch 2
    assert stored["t4"]["last.val_acc"] == pytest.approx(0.4)


def test_close_stores_every_trials_final_status_of_many(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    w = _writer(exp, flush_s=3600.0)  # rows and table land only at Tune's snapshots
    expected: dict[str, tuple[str, str | None]] = {}
    for n in range(24):
        tid = f"t{n:03d}"
        epochs = 1 + n % MAX_T
        _run(w, tid, epochs, acc=0.3 + n / 200)
        error = n % 7 == 0
        checkpoint = f"/ckpt/{tid}" if n % 2 else None
        w.end_trial(tid, error=error, checkpoint=checkpoint)
        if n % 3 == 0:
            w.save_state()  # the table is rewritten from the rows that changed
        status = "error" if error else "finished" if epochs == MAX_T else "stopped early"
        expected[tid] = (status, checkpoint)
    w.close()
    assert _statuses(exp) == expected
    stored = _stored(exp)
    assert stored.schema.metadata[META_KIND] == KIND_TRIALS.encode()
    assert float(stored.schema.metadata[META_RUN_S]) >= 0
    assert stored["trial_id"].to_pylist() == sorted(expected)
    # The stored best/last agree with what the reader recomputes from the epochs.
    trials = read_trials(exp).set_index("trial_id")
    for row in stored.to_pylist():
        assert row["best.val_acc"] == pytest.approx(trials.loc[row["trial_id"], "best.val_acc"])
        assert row["iterations"] == trials.loc[row["trial_id"], "iterations"]


def _row(tid: str, status: str = "running", values: dict[str, Any] | None = None) -> dict[str, Any]:
    fixed = {"experiment": "e", "trial_id": tid, "status": status, "iterations": 1}
    return {**fixed, "checkpoint": None, "degenerate": False, **(values or {})}


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    table = rows_to_table(rows, kind=KIND_TRIALS, experiment="e", fixed=FIXED_TRIAL_COLUMNS)
    return table.replace_schema_metadata(None)


def _same(got: pa.Table, want: pa.Table) -> None:
    """Equal as a rebuild of every row: the same columns, types and values (NaN == NaN)."""
    assert sorted(got.column_names) == sorted(want.column_names)
    assert got.column_names[:6] == [name for name, _ in FIXED_TRIAL_COLUMNS]
    for name in want.column_names:
        assert got.schema.field(name).type == want.schema.field(name).type, name
        for a, b in zip(got[name].to_pylist(), want[name].to_pylist(), strict=True):
            assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), name


def test_replacing_rows_gives_what_a_rebuild_of_every_row_gives() -> None:
    rows = {
        "t1": _row("t1", values={"config.a": 1.0, "config.flag": True, "best.val_acc": 0.5}),
        "t2": _row("t2", values={"config.a": 2, "config.flag": False, "best.val_acc": math.nan}),
        "t3": _row("t3", values={"config.a": 3.0, "best.val_acc": 0.7, "best.gap": 0.1}),
    }
    table = _table([rows[k] for k in sorted(rows)])
    changes: list[dict[str, dict[str, Any]]] = [
        # a status changes, a new trial (sorting before the others) with a new metric
        {"t2": _row("t2", "finished", {"config.a": 2.0, "best.val_acc": 0.6}),
         "t0": _row("t0", values={"config.a": 0.5, "config.new": "x", "best.ece": 0.2})},
        # the only trial with best.gap loses it: the column goes, as in a rebuild
        {"t3": _row("t3", "error", {"config.a": 3.0, "best.val_acc": 0.7})},
        # a config value that was always unset gets a number; a bool column meets a null
        {"t4": _row("t4", values={"config.new": None, "config.flag": None, "best.val_acc": 0.1})},
        # nothing changed
        {},
    ]  # fmt: skip
    for change in changes:
        rows.update(change)
        merged = replace_rows(table, _table([change[k] for k in sorted(change)]))
        assert merged is not None
        _same(merged, _table([rows[k] for k in sorted(rows)]))
        table = merged
    # Text meets a number in one column: not merged, the caller rebuilds.
    clash = _table([_row("t9", values={"config.a": "wide"})])
    assert replace_rows(table, clash) is None


def test_a_type_clash_rebuilds_the_stored_table_whole(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    w = _writer(exp)
    w.add("t1", tune_result(1, {"width": 16}, **_metrics(0.5)))
    w.flush()
    w.add("t2", tune_result(1, {"width": "wide"}, **_metrics(0.6)))
    w.flush()
    stored = _stored(exp)
    assert stored.schema.field("config.width").type == pa.string()
    assert stored["config.width"].to_pylist() == ["16", "wide"]  # JSON text, as a rebuild


def test_merged_parts_keep_the_latest_row_per_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "COMPACT_EVERY_PARTS", 4)
    exp = str(tmp_path / "store")
    w = _writer(exp)  # a part per row
    w.add("t2", tune_result(1, {"lr": None}, **_metrics(0.1)))  # an unset config value
    w.add("t1", tune_result(1, {"lr": 0.1}, **_metrics(0.2)))
    w.add("t1", tune_result(2, {"lr": 0.1}, **_metrics(0.3)))
    w.add("t1", tune_result(2, {"lr": 0.1}, **_metrics(0.35)))  # re-reported: replaces
    folder = tmp_path / "store" / "results" / "epochs"
    parts = list(folder.glob("part-*.parquet"))
    assert len(parts) == 1  # merged at the 4th part
    merged = pq.read_table(parts[0])
    keys = zip(merged["trial_id"].to_pylist(), merged["iteration"].to_pylist(), strict=True)
    assert list(keys) == [("t1", 1), ("t1", 2), ("t2", 1)]
    assert merged["val_acc"].to_pylist() == [0.2, 0.35, 0.1]
    assert merged["config.lr"].to_pylist() == [0.1, 0.1, None]
    assert merged.schema.field("config.lr").type == pa.float64()
    w.close()
    assert read_epochs(exp)["val_acc"].tolist() == [0.2, 0.35, 0.1]


def test_latest_rows_keeps_the_last_written_copy() -> None:
    table = pa.table(
        {"trial_id": ["b", "a", "b", "a"], "iteration": [1, 1, 1, 2], "v": [1.0, 2.0, 3.0, 4.0]}
    )
    out = latest_rows(table)
    assert out.to_pylist() == [
        {"trial_id": "a", "iteration": 1, "v": 2.0},
        {"trial_id": "a", "iteration": 2, "v": 4.0},
        {"trial_id": "b", "iteration": 1, "v": 3.0},
    ]


def test_an_ended_trial_that_runs_again_keeps_its_earlier_epochs_in_its_best(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "store")
    w = _writer(exp, flush_s=3600.0)
    for i, acc in enumerate([0.9, 0.5], start=1):
        w.add("t1", tune_result(i, _config(0.0), **_metrics(acc)))
    w.save_state()  # epochs 1-2 on disk
    w.add("t1", tune_result(3, _config(0.0), **_metrics(0.4)))  # still buffered
    w.end_trial("t1", error=True)
    # Retried from its epoch-2 checkpoint in the same session: epoch 3 again.
    w.add("t1", tune_result(3, _config(0.0), **_metrics(0.45)))
    w.end_trial("t1", error=False)
    w.close()
    row = _stored(exp).to_pylist()[0]
    assert (row["status"], row["iterations"]) == ("finished", 3)
    assert row["best.val_acc"] == pytest.approx(0.9) and row["last.val_acc"] == 0.45
    # A resumed session retries it again (an errored trial is): rows come from disk.
    second = _writer(exp, flush_s=3600.0)
    second.open()
    second.end_trial("t1", error=True)
    second.add("t1", tune_result(3, _config(0.0), **_metrics(0.3)))
    second.end_trial("t1", error=False)
    second.close()
    row = _stored(exp).to_pylist()[0]
    assert (row["status"], row["iterations"]) == ("finished", 3)
    assert row["best.val_acc"] == pytest.approx(0.9) and row["last.val_acc"] == 0.3
    assert read_epochs(exp)["val_acc"].tolist() == [0.9, 0.5, 0.3]


def test_a_trial_that_reported_no_epoch_has_the_config_it_was_given(tmp_path: Path) -> None:
    # A trial that failed before its first epoch (e.g. in reset_config on a
    # reused actor) has no rows to read its config from: it was stored with
    # none, and the summary could not say what failed.
    exp = str(tmp_path / "store")
    w = _writer(exp)
    _run(w, "t1", 3)
    w.end_trial("t1", error=False, config=_config(1e-2))  # its rows' config wins
    w.end_trial("t2", error=True, config=_config(1e-3))
    w.close()
    rows = {r["trial_id"]: r for r in _stored(exp).to_pylist()}
    assert rows["t2"]["status"] == "error"
    assert rows["t2"]["iterations"] == 0
    assert rows["t2"]["config.penalties.l2"] == 1e-3
    assert rows["t2"]["config.model.width"] == 32
    assert rows["t1"]["config.penalties.l2"] == 1e-4
