"""A trial that ended without an epoch and without an error (a sweep cut by
``budget.time_limit_s`` before its first report) is ``not started`` in the results
store, not ``stopped early``: in the trial table, ``read_trials`` and the rebuilt
outcome; a table stored before that status existed reads so too."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from regtune.platform.results import STATUSES, SweepOutcome, read_trials
from regtune.platform.results.files import locate
from regtune.platform.results.read import load_trial_states
from regtune.platform.results.trials import NOT_STARTED, trial_status
from tests.platform.results.conftest import tune_result
from tests.platform.results.test_store import _config, _metrics, _writer


def _store(exp: str) -> None:
    """t1 runs 3 epochs (finished), t2 2 (stopped early), t3 ends without an epoch."""
    w = _writer(exp)
    for tid, epochs in (("t1", 3), ("t2", 2)):
        for i in range(1, epochs + 1):
            w.add(tid, tune_result(i, _config(1e-4), **_metrics(0.5 + 0.01 * i)))
        w.end_trial(tid, error=False)
    w.end_trial("t3", error=False)
    w.close()


def _statuses(exp: str) -> dict[str, str]:
    table = pq.read_table(f"{exp}/results/trials.parquet")
    return dict(zip(table["trial_id"].to_pylist(), table["status"].to_pylist(), strict=True))


EXPECTED = {"t1": "finished", "t2": "stopped early", "t3": NOT_STARTED}


def test_the_status_rule() -> None:
    assert NOT_STARTED == "not started" and NOT_STARTED in STATUSES
    assert trial_status(0, 3, error=False) == NOT_STARTED
    assert trial_status(0, 3, error=True) == "error"
    assert trial_status(0, 3, error=False, ended=False) == "running"
    assert trial_status(1, 3, error=False) == "stopped early"


def test_a_trial_ended_without_an_epoch_is_stored_and_read_not_started(tmp_path: Path) -> None:
    exp = str(tmp_path / "store")
    _store(exp)
    assert _statuses(exp) == EXPECTED
    trials = read_trials(exp).set_index("trial_id")
    assert trials["status"].to_dict() == EXPECTED
    assert int(trials.loc["t3", "iterations"]) == 0
    outcome = SweepOutcome.from_path(exp)
    assert {t.trial_id: t.status for t in outcome.trials} == EXPECTED
    assert outcome.counts() == {"finished": 1, "stopped early": 1, NOT_STARTED: 1}


def test_a_table_stored_before_not_started_existed_reads_not_started(tmp_path: Path) -> None:
    """An old trial table says ``stopped early`` for the 0-epoch trial: read as not started;
    a trial stopped after an epoch stays stopped early."""
    exp = str(tmp_path / "store")
    _store(exp)
    path = f"{exp}/results/trials.parquet"
    table = pq.read_table(path)
    old = ["stopped early" if s == NOT_STARTED else s for s in table["status"].to_pylist()]
    at = table.schema.get_field_index("status")
    table = table.set_column(at, table.schema.field(at), pa.array(old, type=pa.string()))
    pq.write_table(table, path)
    assert _statuses(exp)["t3"] == "stopped early"
    states = load_trial_states(locate(exp)).states
    assert {t: s.status for t, s in states.items()} == EXPECTED
    assert read_trials(exp).set_index("trial_id")["status"].to_dict() == EXPECTED
    outcome = SweepOutcome.from_path(exp)
    assert {t.trial_id: t.status for t in outcome.trials} == EXPECTED
