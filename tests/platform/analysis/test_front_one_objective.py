"""With one objective the front figure, the report's SVG front and the side-by-side
fronts do not plot the metric against itself: one value axis, the trials ranked on the
other (1 = best), the front's members marked."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from regtune.platform.analysis import figures as figures_module
from regtune.platform.analysis.figures import compare_fronts_figure, front_plot, ranked
from regtune.platform.analysis.front import Front, pareto_table
from regtune.platform.analysis.report import front_svg


def _summary() -> pd.DataFrame:
    return pd.DataFrame(
        {"val_acc": [0.90, 0.95, np.nan, 0.80], "ece": [0.1, 0.2, 0.3, 0.05]},
        index=pd.Index(["a", "b", "c", "d"], name="trial_id"),
    )


@pytest.fixture
def one() -> Front:
    return pareto_table(_summary(), [("val_acc", "max")])


def test_ranked_orders_best_first(one: Front) -> None:
    table = ranked(one)
    assert list(table.index) == ["b", "a", "d"]
    assert list(table["rank"]) == [1, 2, 3]


def test_front_plot_one_objective_is_not_the_metric_against_itself(one: Front) -> None:
    fig = front_plot(one)
    ax = fig.axes[0]
    assert ax.get_xlabel() != ax.get_ylabel()
    assert "ranked" in ax.get_xlabel()
    assert ax.get_ylabel() == "val_acc (max)"
    assert "1 trial(s) with no value of val_acc" in ax.get_title()
    # The front's member (b, the best) sits at rank 1 with its value.
    points = {
        str(c.get_label()): c.get_offsets().tolist()  # type: ignore[attr-defined]
        for c in ax.collections
    }
    assert points["front (best)"] == [[1.0, 0.95]]
    assert sorted(points["not best"]) == [[2.0, 0.9], [3.0, 0.8]]
    plt.close(fig)


def test_front_plot_two_objectives_unchanged() -> None:
    fig = front_plot(pareto_table(_summary(), [("val_acc", "max"), ("ece", "min")]))
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("val_acc (max)", "ece (min)")
    plt.close(fig)


def _texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_svg_one_objective_has_one_value_axis(one: Front) -> None:
    texts = _texts(front_svg(one))
    assert texts[:2] == ["trials ranked by val_acc (1 = best)", "val_acc (max)"]
    x_ticks = re.findall(r'class="tick x"[^>]*>([^<]*)<', front_svg(one))
    assert x_ticks == ["1", "2", "3"]
    assert "rank 1\non the front" in front_svg(one).replace("&#x27;", "'")


def test_compare_fronts_one_objective(one: Front, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[Figure] = []
    monkeypatch.setattr(figures_module, "_png", lambda fig: drawn.append(fig) or b"")
    other = pareto_table(_summary().assign(val_acc=[0.7, 0.6, 0.5, 0.4]), [("val_acc", "max")])
    analyses: Any = [
        SimpleNamespace(name="x", path="x", front=one),
        SimpleNamespace(name="y", path="y", front=other),
    ]
    compare_fronts_figure(analyses)
    ax = drawn[0].axes[0]
    assert ax.get_xlabel() != ax.get_ylabel()
    assert "ranked" in ax.get_xlabel()
    lines = {str(line.get_label()).split(" ")[0]: line for line in ax.get_lines()}
    assert list(lines["x"].get_ydata()) == [0.95, 0.90, 0.80]
    assert list(lines["y"].get_ydata()) == [0.7, 0.6, 0.5, 0.4]
    plt.close(drawn[0])
