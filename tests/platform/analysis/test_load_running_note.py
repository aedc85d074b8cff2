"""The note on an experiment with trials stored ``running``: true whether the sweep is
still going or was interrupted (Ctrl+C, a killed driver) and nobody runs it. It used to
say "still running", which misleads about an interrupted sweep; now it says the sweep is
not finished and how ``--resume`` continues it, once, in one line."""

from __future__ import annotations

from pathlib import Path

from regtune.platform.analysis.load import load_experiment
from regtune.platform.analysis.run import analyze_experiment, analyze_tables
from tests.platform.analysis.tables import HEALTHY, SHORT, write_experiment

CONFIGS = {"a": {"penalties": {"l2": 1e-4}}, "s": {"penalties": {"l2": 1e-3}}}
NOTE = (
    "not finished (1 of 2 trials running or interrupted; `regtune sweep SPEC --name int "
    "--resume` continues interrupted ones): analyzed as far as it got"
)


def test_trials_stored_running_are_said_running_or_interrupted_once(tmp_path: Path) -> None:
    exp = tmp_path / "int"
    write_experiment(str(exp), {"a": HEALTHY, "s": SHORT}, CONFIGS, running=["s"])
    loaded = load_experiment(str(exp))
    assert loaded.running == 1
    assert f"{exp}: {NOTE}" in loaded.notes
    analysis = analyze_experiment(str(exp))
    said = [n for n in analysis.notes if "not finished" in n]
    assert said == [f"{exp}: {NOTE}"], analysis.notes
    assert "\n" not in said[0]
    assert not any("still running" in n for n in analysis.notes + analysis.verdict)
    # From the tables alone (the Python API): the same note, without the path.
    tables = analyze_tables(loaded.epochs, trials=loaded.trials, spec=loaded.spec, name="int")
    assert [n for n in tables.notes if "not finished" in n] == [NOTE]
