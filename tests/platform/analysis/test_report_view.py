"""What a reader sees in the report: the inline front has ticks and values, counts have
whole-number ticks, tables say yes/no and left-align text, the calibration legend covers
no point."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from regtune.platform.analysis import analyze_tables
from regtune.platform.analysis.figures import calibration_plot, diagnosis_plot
from regtune.platform.analysis.report import front_svg, render_html
from regtune.platform.analysis.run import Analysis
from tests.platform.analysis.tables import (
    HEALTHY,
    OVERFIT,
    UNDERFIT,
    epochs_table,
    final_report,
    last_epoch_only,
)


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    extra = {"good": last_epoch_only(final_report())}
    for trial, ece in (("good", 0.02), ("bad", 0.01), ("flat", 0.3)):
        extra.setdefault(trial, {})["ece"] = [ece] * 8
    configs = {
        "good": {"penalties.l2": 1e-4},
        "bad": {"penalties.l2": 1e-1},
        "flat": {"penalties.l2": 1e-2},
    }
    epochs = epochs_table({"good": HEALTHY, "bad": OVERFIT, "flat": UNDERFIT}, configs, extra)
    return analyze_tables(epochs, objectives=["val_acc", "ece"], name="view")


def test_the_inline_front_has_axes_ticks_and_values(analysis: Analysis) -> None:
    assert analysis.front is not None
    svg = ET.fromstring(front_svg(analysis.front))
    ns = "{http://www.w3.org/2000/svg}"
    for axis, metric in (("x", "val_acc"), ("y", "ece")):
        ticks = [t for t in svg.iter(f"{ns}text") if t.get("class") == f"tick {axis}"]
        values = [float(t.text or "") for t in ticks]
        assert len(values) >= 3 and values == sorted(values)
        lows = analysis.front.table[metric]
        # Every tick lies within the values drawn (the axis spans them).
        assert min(values) >= lows.min() - 1e-12 and max(values) <= lows.max() + 1e-12
    titles = [t.text for t in svg.iter(f"{ns}text") if t.get("class") is None]
    assert "val_acc (max)" in titles and "ece (min)" in titles


def test_counts_have_whole_number_ticks(analysis: Analysis) -> None:
    fig = diagnosis_plot(analysis.diagnosis)
    (ax,) = fig.axes
    ticks = ax.get_xticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def test_the_calibration_legend_covers_no_point(analysis: Analysis) -> None:
    assert analysis.best is not None and len(analysis.best.reliability)
    fig = calibration_plot(analysis.best)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert all(not box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    assert "perfect" in [t.get_text() for t in legend.get_texts()]


def test_tables_say_yes_no_and_left_align_text(analysis: Analysis) -> None:
    html = render_html([analysis], images={})
    assert not re.search(r"<td[^>]*>(True|False)</td>", html)
    assert re.search(r"<td[^>]*>(yes|no)</td>", html)
    assert '<th class="t">evidence</th>' in html and '<th class="t">diagnosis</th>' in html
    assert "<th>strength</th>" in html  # numbers stay right-aligned


def test_no_best_and_an_empty_front_are_sentences_where_they_would_be() -> None:
    """Side by side, the experiment whose every trial is a constant predictor says
    ``no best:`` and why its front is empty in its own section; the other keeps its best
    trial and front (built from tables: the store's ``degenerate`` column given directly)."""
    configs = {"good": {"penalties.l2": 1e-4}, "flat": {"penalties.l2": 1e-1}}
    epochs = epochs_table({"good": HEALTHY, "flat": UNDERFIT}, configs)
    ids = list(configs)
    kept = analyze_tables(epochs, objectives=["val_acc", "gap"], name="kept")
    dead = analyze_tables(
        epochs,
        trials=pd.DataFrame({"trial_id": ids, "status": "done", "degenerate": True}),
        objectives=["val_acc", "gap"],
        name="dead <all>",
    )
    reason, empty = dead.no_best_reason(), dead.empty_front_reason()
    assert reason is not None and empty is not None
    assert reason.startswith("every trial predicts one class for every row")
    page = render_html([kept, dead], images={})
    first, second = page.split("<section>")[1:]
    assert "<b>no best:</b>" not in first and "the front is empty" not in first
    assert "<h3>Best trial: good</h3>" in first and "trials on the front" in first
    assert "<h2>dead &lt;all&gt;</h2>" in second
    # The front's sentence where the front would be (after the heat map, before the
    # diagnosis); the reason where the best trial would be (the section's end).
    assert (
        f'<h3>Pareto front</h3><p class="note">{html.escape(empty)}</p><h3>Diagnosis</h3>' in second
    )
    assert second.split("</section>")[0].endswith(
        f'<h3>Best trial</h3><p class="note"><b>no best:</b> {html.escape(reason)}</p>'
    )
    assert "hypervolume" not in second and "trials on the front" not in second
