"""SweepOutcome.from_path names the trials a skipped (corrupt) epoch part cost epochs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from regtune.platform.results import ResultsWarning, SweepOutcome
from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import HEALTHY, write_experiment


def test_from_path_warns_naming_the_trials_that_lost_epochs(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    configs = {
        "a": {"model": {"dropout": 0.1}, "penalties": {"l2": 1e-3}},
        "b": {"model": {"dropout": 0.2}, "penalties": {"l2": 1e-2}},
    }
    spec = load_spec("quickstart").to_dict()
    write_experiment(str(exp), {"a": HEALTHY, "b": HEALTHY}, configs, spec=spec)
    folder = exp / "results" / "epochs"
    (merged,) = sorted(folder.glob("part-*.parquet"))
    table = pq.read_table(merged)
    lost = pc.and_(
        pc.equal(table["trial_id"], "b"), pc.is_in(table["iteration"], value_set=pa.array([7, 8]))
    )
    merged.unlink()
    pq.write_table(table.filter(pc.invert(lost)), folder / "part-0001-test-000001.parquet")
    bad = folder / "part-0002-test-000002.parquet"
    pq.write_table(table.filter(lost), bad)
    bad.write_bytes(bad.read_bytes()[:-100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResultsWarning)
        outcome = SweepOutcome.from_path(str(exp))
    messages = [str(w.message) for w in caught if issubclass(w.category, ResultsWarning)]
    lost_notes = [m for m in messages if "stored epochs incomplete" in m]
    assert len(lost_notes) == 1, messages
    assert str(bad) in lost_notes[0] and "b (epochs 7-8 of 8)" in lost_notes[0]
    assert "a (" not in lost_notes[0]
    assert {t.trial_id for t in outcome.trials} == {"a", "b"}
