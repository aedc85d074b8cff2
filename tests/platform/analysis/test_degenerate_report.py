"""Issue #8 in the report and the heat map, on real Parquet stores: constant predictors
(the store's ``degenerate`` trials) are left out of the heat map's cells by default (a
cell of only those is hatched, the title says how many were left out), and the HTML
report says ``no best:`` and why the front is empty where the best trial and the front
would be."""

from __future__ import annotations

import html
import json
import math
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from regtune.platform.analysis.figures import heatmap_plot
from regtune.platform.analysis.report import render_html
from regtune.platform.analysis.run import analyze_experiment
from regtune.platform.cli import app
from tests.platform.analysis.tables import HEALTHY, write_experiment
from tests.platform.analysis.test_degenerate_analysis import MAJORITY, STUCK, _spec

#: id -> (curves, penalties.l2, model.dropout, final val_acc, final group gap); a gap of
#: 0.0 on dp_diff and eo_diff is what the store marks as a constant predictor.
TRIALS = {
    "a": (HEALTHY, 1e-5, 0.0, 0.95, 0.04),
    "b": (HEALTHY, 1e-5, 0.2, 0.93, 0.03),
    "c": (STUCK, 1e-5, 0.2, MAJORITY, 0.0),
    "d": (STUCK, 1.0, 0.0, MAJORITY, 0.0),
    "e": (STUCK, 1.0, 0.2, MAJORITY, 0.0),
}


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two swept strengths (a heat map); c, d, e are constant predictors."""
    exp = tmp_path_factory.mktemp("runs") / "grid"
    configs = {
        t: {"penalties": {"l2": l2}, "model": {"dropout": dropout}}
        for t, (_, l2, dropout, _, _) in TRIALS.items()
    }
    final = {
        t: {"val_acc": acc, "dp_diff": gap, "eo_diff": gap}
        for t, (_, _, _, acc, gap) in TRIALS.items()
    }
    write_experiment(
        str(exp), {t: v[0] for t, v in TRIALS.items()}, configs, spec=_spec(), final=final
    )
    return str(exp)


def _cells(frame: pd.DataFrame) -> dict[tuple[float, float], tuple[int, int, float]]:
    """(x, y) -> (n_trials, n_degenerate, median)."""
    return {
        (float(r.x), float(r.y)): (int(r.n_trials), int(r.n_degenerate), float(r.median))
        for r in frame.itertuples(index=False)
    }


def test_the_heat_map_leaves_constant_predictors_out_of_its_cells(grid: str) -> None:
    cells = analyze_experiment(grid).heatmap
    assert cells is not None
    assert (cells.attrs["x"], cells.attrs["y"]) == ("model.dropout", "penalties.l2")
    got = _cells(cells)
    # The strong-l2 row only gave constant predictors: tried (counted), no median.
    assert set(got) == {(0.0, 1e-5), (0.2, 1e-5), (0.0, 1.0), (0.2, 1.0)}
    assert got[(0.0, 1e-5)] == (1, 0, pytest.approx(0.95))
    # c's 0.9822 would have pulled this cell's median to 0.9561; only b's 0.93 counts.
    assert got[(0.2, 1e-5)] == (1, 1, pytest.approx(0.93))
    for strong in ((0.0, 1.0), (0.2, 1.0)):
        n, d, median = got[strong]
        assert (n, d) == (0, 1) and math.isnan(median)
    assert cells.attrs["n_degenerate"] == 3

    fig = heatmap_plot(cells)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert sorted(texts) == sorted(
        [
            "0.95\n(n=1)",
            "0.93\n(n=1)\n1 degenerate\nleft out",
            "only\ndegenerate\n(1)",
            "only\ndegenerate\n(1)",
        ]
    )
    assert len(ax.patches) == 2  # the two hatched cells
    # Readable on either end of viridis: black on the bright top cell (0.95), white
    # on the dark bottom one (0.93); the grey hatched cells keep black.
    colour = {t.get_text().split("\n")[0]: t.get_color() for t in ax.texts}
    assert (colour["0.95"], colour["0.93"], colour["only"]) == ("k", "w", "k")
    title = " ".join(ax.get_title().split())
    assert title == (
        "median val_acc 3 degenerate trial(s) (constant predictors) left out of the cells' "
        "medians and counts; 2 hatched cell(s) held only degenerate trials; "
        "--include-degenerate keeps them"
    )


def test_include_degenerate_keeps_them_in_the_cells_and_says_so(grid: str) -> None:
    cells = analyze_experiment(grid, include_degenerate=True).heatmap
    assert cells is not None
    got = _cells(cells)
    assert got[(0.0, 1e-5)] == (1, 0, pytest.approx(0.95))
    assert got[(0.2, 1e-5)] == (2, 1, pytest.approx((0.93 + MAJORITY) / 2))
    for strong in ((0.0, 1.0), (0.2, 1.0)):
        assert got[strong] == (1, 1, pytest.approx(MAJORITY))
    ax = heatmap_plot(cells).axes[0]
    assert not ax.patches
    assert "0.956\n(n=2)\n(incl. 1 degenerate)" in [t.get_text() for t in ax.texts]
    assert "kept in the cells' medians and counts (--include-degenerate)" in " ".join(
        ax.get_title().split()
    )


@pytest.mark.parametrize("include", [False, True], ids=["default", "include-degenerate"])
def test_json_heatmap_cells_are_the_figures_cells(grid: str, include: bool) -> None:
    """``regtune analyze --json``'s heat map is the one the figure draws (the same cells,
    counts and medians), and its verdict says what the options did with the constant
    predictors."""
    args = ["analyze", grid, "--json"] + (["--include-degenerate"] if include else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["experiments"][0]
    heat = data["heatmap"]
    cells = analyze_experiment(grid, include_degenerate=include).heatmap
    assert cells is not None
    figure = [
        {
            "x": float(r.x),
            "y": float(r.y),
            "n_trials": int(r.n_trials),
            "n_degenerate": int(r.n_degenerate),
            "median": None if math.isnan(r.median) else float(r.median),
        }
        for r in cells.itertuples(index=False)
    ]
    assert heat["cells"] == figure
    assert heat["n_degenerate"] == 3 and heat["include_degenerate"] is include
    by_cell = {(c["x"], c["y"]): (c["n_trials"], c["n_degenerate"], c["median"]) for c in figure}
    if include:
        assert by_cell[(0.2, 1e-5)] == (2, 1, pytest.approx((0.93 + MAJORITY) / 2))
        assert by_cell[(0.0, 1.0)] == (1, 1, pytest.approx(MAJORITY))
        said = "; --include-degenerate keeps them eligible for the front and the best"
    else:
        assert by_cell[(0.2, 1e-5)] == (1, 1, pytest.approx(0.93))
        assert by_cell[(0.0, 1.0)] == (0, 1, None)
        said = "; by default they are left off the front and the best"
    assert data["verdict"][0].startswith("the top trial by val_acc, ")
    assert (
        "3 of 5 trials are degenerate (each predicts one class for every row, a "
        in (data["verdict"][0])
    )
    assert said in data["verdict"][0]


def test_the_report_says_what_the_heat_map_left_out(grid: str) -> None:
    analysis = analyze_experiment(grid)
    page = render_html([analysis], images={})
    heat = page[page.index("<h3>Heat map</h3>") : page.index("<h3>Pareto front</h3>")]
    assert (
        '<p class="note">3 degenerate trial(s) (constant predictors) left out of the '
        "cells&#x27; medians and counts; 2 hatched cell(s) held only degenerate trials; "
        "--include-degenerate keeps them</p>"
    ) in heat
    # a is best (c, d, e score higher but are constant predictors): a best section, no 'no best'.
    assert "<h3>Best trial: a</h3>" in page and "<b>no best:</b>" not in page


@pytest.fixture(scope="module")
def all_constant(tmp_path_factory: pytest.TempPathFactory) -> str:
    exp = tmp_path_factory.mktemp("runs") / "churn"
    configs = {
        t: {"penalties": {"l2": l2}, "model": {"dropout": 0.1}}
        for t, l2 in (("a", 1e-4), ("b", 1e-2), ("c", 1.0))
    }
    final = {t: {"val_acc": MAJORITY, "dp_diff": 0.0, "eo_diff": 0.0} for t in configs}
    write_experiment(str(exp), {t: STUCK for t in configs}, configs, spec=_spec(), final=final)
    return str(exp)


def test_the_report_says_no_best_and_why_the_front_is_empty(all_constant: str) -> None:
    analysis = analyze_experiment(all_constant)
    reason, empty = analysis.no_best_reason(), analysis.empty_front_reason()
    assert reason is not None and empty is not None
    assert "'" in reason  # quotes 'No best trial': escaped as the rest of the report is
    page = render_html([analysis], images={})
    assert f'<h3>Best trial</h3><p class="note"><b>no best:</b> {html.escape(reason)}</p>' in page
    assert reason not in page
    # Where the front would be: the sentence, not a hypervolume of 0 over an empty table.
    front = page[page.index("<h3>Pareto front</h3>") : page.index("<h3>Diagnosis</h3>")]
    assert front == f'<h3>Pareto front</h3><p class="note">{html.escape(empty)}</p>'
    assert "trials on the front" not in page and "hypervolume" not in page
    # Every section is closed: the sentences sit inside the experiment's section.
    assert page.count("<section>") == page.count("</section>") == 1
    assert re.search(r"no best:</b> every trial predicts one class for every row", page)
    # With them kept, the same store has a best trial and a front, and neither sentence.
    kept = render_html([analyze_experiment(all_constant, include_degenerate=True)], images={})
    assert "<b>no best:</b>" not in kept and '<p class="note">the front is empty' not in kept
    assert "<h3>Best trial: a</h3>" in kept and "trials on the front" in kept
    # The verdict says what is true with them kept, not what happens by default.
    assert "by default no trial is best" not in kept
    assert (
        "all 3 trials are degenerate (each predicts one class for every row, a constant "
        "predictor): --include-degenerate keeps them eligible, so any best trial or front "
        "point is a constant predictor"
    ) in kept
