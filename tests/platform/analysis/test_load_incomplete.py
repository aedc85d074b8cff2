"""A corrupt epoch part or trial table makes the analysis say what it cost, not guess.

Real Parquet files: an experiment written by the results store's writer, its
merged part split into two real parts (regtune's metadata kept), then one of
them truncated (D5); or its ``trials.parquet`` truncated (D6).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from regtune.platform.analysis.load import load_experiment
from regtune.platform.analysis.run import analyze_experiment
from regtune.platform.results import ResultsWarning, read_trials
from tests.platform.analysis.tables import HEALTHY, SHORT, write_experiment

#: Best at epoch 5 (val loss 0.1), poor at its last epoch (0.7): ranked on its first five
#: epochs alone, it would wrongly be the best trial.
PEAKS_EARLY = {
    "train_loss": [1.0, 0.5, 0.3, 0.2, 0.15, 0.12, 0.1, 0.09],
    "val_loss": [1.0, 0.5, 0.3, 0.2, 0.1, 0.5, 0.6, 0.7],
}
CURVES = {"a": HEALTHY, "b": PEAKS_EARLY, "c": HEALTHY, "d": HEALTHY}
CONFIGS = {
    "a": {"penalties": {"l2": 1e-4}},
    "b": {"penalties": {"l2": 1e-3}},
    "c": {"penalties": {"l2": 1e-2}},
    "d": {"penalties": {"l2": 1e-1}},
}
#: The rows that go into the part that is then truncated: b's last three epochs, c's first.
LOST = {"b": (6, 7, 8), "c": (1, 2, 3)}


def _write(exp: Path) -> None:
    write_experiment(str(exp), CURVES, CONFIGS)


def _split_and_truncate(exp: Path) -> Path:
    """Split the experiment's one (merged) part into two real parts, the second holding
    the rows in :data:`LOST`, and cut that one short. Returns the truncated part."""
    folder = exp / "results" / "epochs"
    (merged,) = sorted(folder.glob("part-*.parquet"))
    table = pq.read_table(merged)
    lost = None
    for trial, epochs in LOST.items():
        mask = pc.and_(
            pc.equal(table["trial_id"], trial),
            pc.is_in(table["iteration"], value_set=pa.array(epochs)),
        )
        lost = mask if lost is None else pc.or_(lost, mask)
    assert lost is not None
    kept, gone = table.filter(pc.invert(lost)), table.filter(lost)
    assert gone.schema.metadata == table.schema.metadata  # regtune's metadata travels
    merged.unlink()
    first = folder / "part-00000000000000000001-test-000001.parquet"
    second = folder / "part-00000000000000000002-test-000002.parquet"
    pq.write_table(kept, first)
    pq.write_table(gone, second)
    data = second.read_bytes()
    second.write_bytes(data[: len(data) - 100])
    return second


@pytest.fixture
def corrupt(tmp_path: Path) -> tuple[Path, Path]:
    exp = tmp_path / "exp"
    _write(exp)
    return exp, _split_and_truncate(exp)


@pytest.mark.parametrize("columns", [None, ["val_acc", "train_loss", "val_loss"]])
def test_trials_that_lost_epochs_are_named(corrupt: tuple[Path, Path], columns) -> None:
    exp, part = corrupt
    loaded = load_experiment(str(exp), columns=columns)
    assert loaded.incomplete == {"b": "epochs 6-8 of 8", "c": "epochs 1-3 of 8"}
    notes = " ".join(loaded.notes)
    assert f"{part}: skipped (not readable as Parquet" in notes
    note = next(n for n in loaded.notes if "stored epochs incomplete" in n)
    assert str(part) in note
    assert "b (epochs 6-8 of 8)" in note and "c (epochs 1-3 of 8)" in note
    assert "a (" not in note and "d (" not in note
    assert part.exists()  # left in place


def test_incomplete_trials_are_not_ranked_drawn_or_diagnosed(corrupt: tuple[Path, Path]) -> None:
    exp, _part = corrupt
    analysis = analyze_experiment(str(exp))
    # Ranked on its first five epochs, b would be best (val loss 0.1); its last epoch is poor.
    assert analysis.best is not None and analysis.best.trial_id in {"a", "d"}
    assert analysis.incomplete == {"b": "epochs 6-8 of 8", "c": "epochs 1-3 of 8"}
    assert set(analysis.summary.index) == {"a", "b", "c", "d"}  # still listed
    table = analysis.front.table if analysis.front is not None else None
    assert table is not None
    assert table.loc["b", "excluded"] == "incomplete" and not table.loc["b", "on_front"]
    assert table.loc["c", "excluded"] == "incomplete" and not table.loc["c", "on_front"]
    assert set(analysis.diagnosis.index) == {"a", "d"}
    path = analysis.paths["penalties.l2"]
    path = path[path["metric"] == "val_acc"]
    assert sorted(path["strength"]) == [1e-4, 1e-1]  # a and d only
    assert analysis.to_dict()["incomplete"] == analysis.incomplete


def test_every_trial_incomplete_gives_no_best_and_says_why(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    write_experiment(str(exp), {"b": PEAKS_EARLY}, {"b": CONFIGS["b"]})
    folder = exp / "results" / "epochs"
    (merged,) = sorted(folder.glob("part-*.parquet"))
    table = pq.read_table(merged)
    merged.unlink()
    pq.write_table(table.slice(0, 5), folder / "part-00000000000000000001-test-000001.parquet")
    bad = folder / "part-00000000000000000002-test-000002.parquet"
    pq.write_table(table.slice(5), bad)
    bad.write_bytes(bad.read_bytes()[:-100])
    analysis = analyze_experiment(str(exp))
    assert analysis.best is None
    reason = analysis.no_best_reason()
    assert reason is not None and "lost stored epochs" in reason
    assert "lost stored epochs" in (analysis.empty_front_reason() or "")


def test_store_reader_warns_naming_the_trials(corrupt: tuple[Path, Path]) -> None:
    exp, part = corrupt
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResultsWarning)
        read_trials(str(exp))
    messages = [str(w.message) for w in caught if issubclass(w.category, ResultsWarning)]
    lost = [m for m in messages if "stored epochs incomplete" in m]
    assert len(lost) == 1, messages
    assert str(part) in lost[0]
    assert "b (epochs 6-8 of 8)" in lost[0] and "c (epochs 1-3 of 8)" in lost[0]


def test_clean_store_has_no_incomplete_trials(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _write(exp)
    for columns in (None, ["val_acc"]):
        loaded = load_experiment(str(exp), columns=columns)
        assert loaded.incomplete == {}
        assert not any("incomplete" in n for n in loaded.notes)


# -- D6: an unreadable trials.parquet ------------------------------------------------------


@pytest.mark.parametrize("columns", [None, ["val_acc", "train_loss", "val_loss"]])
def test_unreadable_trial_table_makes_statuses_unknown_not_running(tmp_path: Path, columns) -> None:
    exp = tmp_path / "exp"
    curves = {"a": HEALTHY, "s": SHORT}
    write_experiment(str(exp), curves, {"a": CONFIGS["a"], "s": CONFIGS["b"]})
    trials = exp / "results" / "trials.parquet"
    data = trials.read_bytes()
    trials.write_bytes(data[: len(data) // 2])
    loaded = load_experiment(str(exp), columns=columns)
    assert set(loaded.trials["status"]) == {"unknown"}
    assert loaded.running == 0
    notes = " ".join(loaded.notes)
    assert "still running" not in notes and "running or interrupted" not in notes
    assert "status is unknown" in notes and "trial table could not be read" in notes
    assert f"{trials}: skipped" in notes
    assert trials.exists()


def test_analyze_never_says_running_for_an_unreadable_trial_table(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    curves = {"a": HEALTHY, "s": SHORT}
    write_experiment(str(exp), curves, {"a": CONFIGS["a"], "s": CONFIGS["b"]})
    trials = exp / "results" / "trials.parquet"
    trials.write_bytes(trials.read_bytes()[:100])
    analysis = analyze_experiment(str(exp))
    text = " ".join(analysis.notes + analysis.verdict)
    assert "still running" not in text and "running or interrupted" not in text, text
    assert "status is unknown" in text
