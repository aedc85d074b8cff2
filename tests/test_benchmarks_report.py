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


def test_robustness_reports_the_worst_seed_beside_the_mean() -> None:
    from benchmarks import trainables_robustness as rob

    def cell(acc: float, robust: float) -> dict[str, float]:
        return {"test_acc": acc, "robust": robust, "median_epoch_s": 1.0, "train_time_s": 1.0}

    clean = [cell(0.98, 0.3), cell(0.98, 0.3), cell(0.98, 0.3)]
    # Mean robust accuracy 0.81 >= 0.80, one seed at 0.78.
    fgsm = [cell(0.99, 0.84), cell(0.99, 0.81), cell(0.99, 0.78)]
    s = rob.summarize("mlp", "fgsm_rs", fgsm, clean)
    assert s["passed"] is True and s["passed_worst_seed"] is False
    assert s["robust_min_seed"] == 0.78 and s["test_acc_min_seed"] == 0.99
    assert "PASS on the mean" in s["verdict"] and "worst seed: MISSED" in s["verdict"]
    row = rob.table_rows([s])[0]
    assert len(row) == len(rob.HEADERS)
    assert row[rob.HEADERS.index("robust acc (mean ± sd)") + 1] == "0.7800"
    low_clean = rob.summarize("mlp", "clean", [cell(0.99, 0.3), cell(0.96, 0.3)], clean)
    assert low_clean["passed"] is True and low_clean["passed_worst_seed"] is False
    assert low_clean["test_acc_min_seed"] == 0.96


def test_fairness_reports_the_worst_seed_beside_the_mean() -> None:
    from benchmarks import trainables_fairness as fair

    def run(acc: float, dp: float, ece: float) -> dict[str, float]:
        return {"acc": acc, "dp_diff": dp, "eo_diff": 0.1, "ece": ece, "fit_s": 1.0}

    # Mean dp_diff 0.016 <= 0.02, one seed at 0.03; mean acc 0.84, one seed 0.833.
    summary = fair._summary(
        [run(0.845, 0.008, 0.01), run(0.842, 0.01, 0.01), run(0.833, 0.03, 0.01)]
    )
    ok, target, worst_ok, worst = fair._check("regtune DP", summary)
    assert ok is True and worst_ok is False
    assert "dp_diff <= 0.02" in target
    assert worst == "dp_diff 0.0300, acc 0.8330, ece 0.0100"
    fine = fair._summary([run(0.85, 0.01, 0.01), run(0.86, 0.015, 0.012)])
    assert fair._check("regtune DP", fine)[2] is True


def test_pareto_asha_report_says_the_load() -> None:
    from benchmarks import pareto_asha
    from benchmarks.common import RESULTS_DIR

    payload = json.loads((RESULTS_DIR / "pareto_asha.json").read_text())
    summary, md = pareto_asha.report(payload)
    assert summary["hv_ratio_vs_nsga2"] > 0
    assert "1-minute load average" in md
    assert (RESULTS_DIR / "pareto_asha.md").read_text() == md.rstrip() + "\n"


def test_pareto_asha_check_rejects_a_zero_hypervolume() -> None:
    from benchmarks.common import RESULTS_DIR
    from tests.test_benchmarks_smoke import VALUE_CHECKS

    payload = json.loads((RESULTS_DIR / "pareto_asha.json").read_text())
    VALUE_CHECKS["pareto_asha"](payload)
    payload["runs"]["scalarized-asha"][0]["hypervolume"] = 0.0
    with pytest.raises(AssertionError, match="scalarized-asha hypervolume"):
        VALUE_CHECKS["pareto_asha"](payload)
