"""What a reader sees in the report: the inline front has ticks and values, counts have
whole-number ticks, tables say yes/no and left-align text, the calibration legend covers
no point."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

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
