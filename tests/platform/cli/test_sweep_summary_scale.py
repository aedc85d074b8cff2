"""The end-of-sweep summary stays a screenful at any number of trials.

The table holds the best :data:`~regtune.platform.cli.sweep.SUMMARY_ROWS` trials
(ranked as the "best by" line ranks them) and one line counts the rest, with
the failed, constant-predictor and Pareto-front trials among them, and names
``regtune analyze``; ``--json`` still lists every trial. Checked on synthetic
outcomes of 1,000 trials and end to end on a stored experiment (real Parquet
written by the results store) through ``regtune sweep --resume``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console, Group
from rich.table import Table
from typer.testing import CliRunner

from regtune.platform.cli import app
from regtune.platform.cli.sweep import SUMMARY_ROWS, print_summary, summary_table
from regtune.platform.results.outcome import SweepOutcome, TrialSummary, pareto_indices
from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import write_experiment

runner = CliRunner()

TWO_OBJECTIVES = (("val_acc", "max"), ("ece", "min"))


def _many(n: int) -> SweepOutcome:
    """``n`` trials with distinct val_acc in a shuffled order (the best is not the
    first nor the last stored), every 50th from the 7th failed and every 50th from
    the 13th a constant predictor (both with the top val_acc, so a ranking that
    forgot to leave them out would show them first)."""
    trials = []
    for i in range(n):
        rank = (i * 7919) % n  # a permutation of 0..n-1 (7919 is prime)
        acc = 0.5 + 0.4 * rank / n
        ece = 0.01 + 0.1 * ((i * 31) % n) / n
        failed, constant = i % 50 == 7, i % 50 == 13
        if failed or constant:
            acc = 0.99
        trials.append(
            TrialSummary(
                trial_id=f"5eed0042_{i:05d}",
                status="error" if failed else ("finished", "stopped early")[i % 3 == 0],
                iterations=3 if failed else 10,
                params={"penalties.l2": 1e-6 * (i + 1), "model.dropout": (i % 10) / 20},
                objectives={"val_acc": acc, "ece": ece},
                metrics={"val_acc": acc, "ece": ece},
                checkpoint=None,
                degenerate=constant,
            )
        )
    return SweepOutcome(
        name="big",
        path="/runs/big",
        objectives=TWO_OBJECTIVES,
        trials=trials,
        elapsed_s=3600.0,
        front=pareto_indices(TWO_OBJECTIVES, trials),
    )


def _render(outcome: SweepOutcome, width: int) -> str:
    console = Console(width=width, file=io.StringIO())
    print_summary(outcome, spec="big.yaml", overrides=[], console=console)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _row_ids(text: str, ids: set[str]) -> list[str]:
    """The trial ids that start table lines (boxed or not), in print order."""
    words = [line.replace("│", " ").split()[:1] for line in text.splitlines()]
    return [w[0] for w in words if w and w[0] in ids]


def _expected_left_out_line(outcome: SweepOutcome, shown: set[str]) -> str:
    """The counting line, built independently of the code under test."""
    hidden = [(i, t) for i, t in enumerate(outcome.trials) if t.trial_id not in shown]
    front = sum(1 for i, _ in hidden if i in set(outcome.front))
    failed = sum(1 for _, t in hidden if t.status == "error")
    constant = sum(1 for _, t in hidden if t.degenerate and t.status != "error")
    among = [
        f"{front} on the Pareto front",
        f"{failed} failed",
        f"{constant} constant predictor{'' if constant == 1 else 's'}",
    ]
    counted = ", ".join(a for a in among if not a.startswith("0 "))
    return (
        f"... {len(hidden)} more trials ({counted}): regtune analyze /runs/big; "
        "--json lists every trial"
    )


def test_a_thousand_trials_show_the_best_ones_and_count_the_rest() -> None:
    outcome = _many(1000)
    text = _render(outcome, 200)
    ids = {t.trial_id for t in outcome.trials}
    rows = _row_ids(text, ids)
    assert len(rows) == SUMMARY_ROWS
    # The best first (the one the "best by" line names), then the next best by val_acc.
    best = outcome.best
    assert best is not None and rows[0] == best.trial_id
    assert f"best by val_acc: trial {best.trial_id}" in text
    usable = [t for t in outcome.trials if t.status != "error" and not t.degenerate]
    by_acc = sorted(usable, key=lambda t: -t.objectives["val_acc"])
    assert rows == [t.trial_id for t in by_acc[:SUMMARY_ROWS]]
    assert _expected_left_out_line(outcome, set(rows)) in text.splitlines()
    # Every count of the sweep is still said, over all trials.
    assert "1000 trials (" in text and "20 error" in text
    assert "20 trials marked constant predictor" in text


def test_a_thousand_trials_fit_a_screen_at_80_columns() -> None:
    outcome = _many(1000)
    text = _render(outcome, 80)
    # The table fits; the lines after it hold commands and paths, never wrapped.
    table, rest = text.split("... 980 more trials (")
    assert all(len(line) <= 80 for line in table.splitlines())
    assert len(text.splitlines()) <= 2 * (SUMMARY_ROWS + 6) + 12
    assert rest.splitlines()[0].endswith("regtune analyze /runs/big; --json lists every trial")
    best = outcome.best
    assert best is not None
    assert f"best by val_acc: trial {best.trial_id}" in text


def test_only_the_printed_rows_are_laid_out() -> None:
    """What rich measures (the cost that grew with the trials) is the printed rows."""
    outcome = _many(1000)
    wide = summary_table(outcome, width=200)
    assert isinstance(wide, Table) and wide.row_count == SUMMARY_ROWS
    narrow = summary_table(outcome, width=40)  # too narrow for one table: stacked parts
    assert isinstance(narrow, Group)
    parts = [r for r in narrow.renderables if isinstance(r, Table)]
    assert len(parts) > 1 and all(p.row_count == SUMMARY_ROWS for p in parts)


@pytest.mark.parametrize(
    ("n", "line"),
    [
        (SUMMARY_ROWS, None),
        (SUMMARY_ROWS + 1, "... 1 more trial: regtune analyze /runs/few; --json lists every trial"),
    ],
)
def test_every_trial_is_shown_up_to_the_limit(n: int, line: str | None) -> None:
    params = [{"penalties.l2": 1e-5 * (i + 1)} for i in range(n)]
    trials = [
        TrialSummary(
            trial_id=f"ab_{i:03d}",
            status="finished",
            iterations=4,
            params=p,
            objectives={"val_acc": 0.5 + 0.01 * i},
            metrics={},
            checkpoint=None,
        )
        for i, p in enumerate(params)
    ]
    outcome = SweepOutcome("few", "/runs/few", (("val_acc", "max"),), trials, 1.0)
    text = _render(outcome, 200)
    rows = _row_ids(text, {t.trial_id for t in trials})
    assert len(rows) == min(n, SUMMARY_ROWS)
    assert rows[0] == f"ab_{n - 1:03d}"
    if line is None:
        assert "more trial" not in text
    else:
        assert line in text.splitlines()
        assert "ab_000" not in rows  # the worst is the one left out


def test_resume_of_a_large_finished_sweep_prints_the_best_and_json_every_trial(
    tmp_path: Path,
) -> None:
    """``regtune sweep --resume`` of a finished experiment in the real results store:
    the terminal table has the best rows and the counting line; ``--json`` every trial."""
    n = SUMMARY_ROWS + 25
    spec = load_spec("quickstart").to_dict()
    spec["budget"]["samples"] = n
    curves: dict[str, dict[str, list[float]]] = {}
    configs: dict[str, dict[str, Any]] = {}
    for i in range(n):
        floor = 0.2 + 0.6 * ((i * 17) % n) / n  # distinct val_loss: a strict ranking
        curves[f"t{i:03d}"] = {
            "train_loss": [2.0, 1.0, floor],
            "val_loss": [2.1, 1.1, floor + 0.05],
        }
        configs[f"t{i:03d}"] = {"penalties": {"l2": 1e-6 * (i + 1)}, "model": {"dropout": 0.01 * i}}
    exp = tmp_path / "wide"
    write_experiment(str(exp), curves, configs, spec=spec, max_t=3)
    (tmp_path / "wide.yaml").write_text(yaml.safe_dump(spec))
    args = ["sweep", str(tmp_path / "wide.yaml"), "--resume", "--storage", str(tmp_path)]
    args += ["--name", "wide"]

    shown = runner.invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert "nothing left to resume" in shown.stderr
    rows = _row_ids(shown.stdout, set(curves))
    assert len(rows) == SUMMARY_ROWS
    best = min(curves, key=lambda t: curves[t]["val_loss"][-1])  # lowest loss: top val_acc
    assert rows[0] == best
    assert f"best by val_acc: trial {best}" in shown.stdout
    more = f"... 25 more trials: regtune analyze {exp}; --json lists every trial"
    assert more in shown.stdout.splitlines()

    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    assert sorted(t["trial_id"] for t in payload["trials"]) == sorted(curves)
    assert payload["best"]["trial_id"] == best
