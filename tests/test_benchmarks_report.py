"""The benchmarks' report code, without running a benchmark: medians,
results_store's ``--report-only``, and run_all's BENCHMARKS.md summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import results_store, run_all
from benchmarks.common import RESULTS_ENV, median_of


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    runs = {"a": [{"t": 129.6}, {"t": 91.2}], "b": [{"t": 3.0}, {"t": 1.0}, {"t": 2.0}]}
    assert median_of(runs, "a", "t") == pytest.approx(110.4)
    assert median_of(runs, "b", "t") == 2.0
    assert median_of(runs, "missing", "t") != median_of(runs, "missing", "t")  # NaN


def _store_payload() -> dict[str, object]:
    costs = {
        f"{label}_{key}": 1.0
        for label in ("default_flush", "flush_every_row")
        for key in ("add_ms_per_epoch", "close_s", "read_ms_per_epoch")
    }
    run = {"epochs_trained": 80, "rows_stored": 80, "callback_s": 0.3}
    return {
        "benchmark": "results_store",
        "smoke_test": False,
        "machine": {"date": "2026-11-30 13:08:57", "cpu_count": 2},
        "samples": 8,
        "max_epochs": 10,
        "repeats": 2,
        "runs": {
            "with-store": [{**run, "wall_s": 90.0}, {**run, "wall_s": 130.0}],
            "no-store": [{**run, "wall_s": 80.0, "rows_stored": 0}, {**run, "wall_s": 120.0}],
        },
        # As JSON written before the writer's costs were kept apart.
        "summary": {**costs, "sweep_wall_ratio_with_vs_without": 1.083},
    }


def test_results_store_report_only_rebuilds_from_the_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path))
    (tmp_path / "results_store.json").write_text(json.dumps(_store_payload()))
    assert results_store.main(["--report-only"]) == 0
    payload = json.loads((tmp_path / "results_store.json").read_text())
    md = (tmp_path / "results_store.md").read_text()
    # Medians of two runs: 110 and 100, not the larger of each pair.
    assert payload["summary"]["sweep_wall_ratio_with_vs_without"] == pytest.approx(1.1)
    assert "| with-store | 110 |" in md and "| no-store | 100 |" in md
    assert "with/without the store 1.100" in md
    assert "Writer: 2000 reported epochs of 20 trials" in md
    assert payload["machine"]["date"] == "2026-11-30 13:08:57"  # nothing was rerun


def _results(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / f"{name}.md").write_text(f"| {name} table |\n")
        machine = {"date": "2026-12-03 08:00:00", "cpu_count": 2, "torch": "x"}
        (tmp_path / f"{name}.json").write_text(json.dumps({"machine": machine}))
    return tmp_path


def test_summarise_marks_a_kept_section_without_json(tmp_path: Path) -> None:
    names = [name for name, _, _ in run_all.BENCHMARKS]
    present = names[1:]
    title = run_all.BENCHMARKS[0][1]
    previous = (
        f"# Benchmarks\n\n## {title}\n\nwhat it compares.\n\n| old table |\n\n"
        "_Measured 2026-11-25 14:51:53: 2 CPUs._\n"
    )
    text = run_all.summarise(previous, _results(tmp_path, *present))
    section = run_all._sections(text)[title]
    assert "| old table |" in section
    assert run_all.NO_JSON in section
    assert section.index("what it compares") < section.index(run_all.NO_JSON)
    assert section.index(run_all.NO_JSON) < section.index("| old table |")
    # Sections with their JSON get the footer and no such line.
    for name, other, _ in run_all.BENCHMARKS[1:]:
        body = run_all._sections(text)[other]
        assert f"| {name} table |" in body and "_Measured 2026-12-03 08:00:00" in body
        assert run_all.NO_JSON not in body
    # Summarising again does not stack the line.
    again = run_all.summarise(text, tmp_path)
    assert run_all._sections(again)[title].count(run_all.NO_JSON) == 1


def test_summarise_never_run_and_changes_section(tmp_path: Path) -> None:
    names = [name for name, _, _ in run_all.BENCHMARKS]
    _results(tmp_path, *names[1:])
    (tmp_path / "changes.md").write_text("### 2026-12-02, stop 26\n\n| a | b |\n")
    text = run_all.summarise("", tmp_path)
    sections = run_all._sections(text)
    assert "_Not run yet._" in sections[run_all.BENCHMARKS[0][1]]
    changes = sections[run_all.CHANGES[1]]
    assert "### 2026-12-02, stop 26" in changes
    # The hand-measured tables carry no generated date footer.
    assert "_Measured 2" not in changes
    assert list(sections)[-1] == run_all.CHANGES[1]


def test_cohort_speed_names_the_fit_and_the_constant_apart() -> None:
    from benchmarks.cohort_speed import _render
    from benchmarks.common import RESULTS_DIR
    from regtune.trainables.cohort_pad import GROUP_OVERHEAD_MACS

    payload = json.loads((RESULTS_DIR / "cohort_speed.json").read_text())
    md = _render(payload)
    fitted = f"{payload['fit']['overhead_macs']:.3g} multiply-adds per example in this run's fit"
    assert fitted in md
    assert f"`cohort_pad.GROUP_OVERHEAD_MACS`, is {GROUP_OVERHEAD_MACS:,.0f})" in md
    # The committed table is this rendering of the committed JSON.
    assert (RESULTS_DIR / "cohort_speed.md").read_text() == md.rstrip() + "\n"
