"""A log-scaled grid with an "off" point (0), as the built-in ``l2-path`` preset sweeps
``[0, 1e-5 ... 1e-1]``: the verdict reads it on the log scale of its positive values, 0 a point
of its own below them (never linearly, where every positive strength is "0% of the way up"),
widens it x10 upward and says a best of 0 is already no regularization; the path figures'
symlog axis starts at 0, never at made-up negative strengths."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.figure import Figure

from regtune.platform.analysis import figures
from regtune.platform.analysis.swept import SweptParameter, swept_parameters
from regtune.platform.analysis.verdict import edges, range_position, sweep_verdict
from tests.platform.analysis.tables import NO_DIAGNOSIS, val_acc_path

GRID = SweptParameter("penalties.l2", "grid", 0.0, 1.0, True, True)
PRESET = SweptParameter("penalties.l2", "grid", 0.0, 0.1, True, True)


def test_a_grid_with_zero_spanning_decades_is_log_scaled() -> None:
    table = pd.DataFrame({"config.penalties.l2": [0.0, 1e-4, 1e-2, 1.0]})
    (found,) = swept_parameters(table)
    assert found.log and found.low == 0.0


def test_position_reads_zero_one_decade_below_the_smallest_positive_value() -> None:
    # [0, 1e-4, 1e-2, 1]: 4 slots of one decade (0 -> 1e-4, then 4 decades to 1).
    assert range_position(0.0, 0.0, 1.0, log=True, floor=1e-4) == 0.0
    assert range_position(1e-4, 0.0, 1.0, log=True, floor=1e-4) == pytest.approx(0.2)
    assert range_position(1e-2, 0.0, 1.0, log=True, floor=1e-4) == pytest.approx(0.6)
    assert range_position(1.0, 0.0, 1.0, log=True, floor=1e-4) == 1.0
    # Without a floor (and for every other range) as before.
    assert range_position(1e-4, 0.0, 1.0, log=True) == pytest.approx(1e-4)


def test_the_second_grid_value_is_not_called_zero_percent_of_the_way_up() -> None:
    path = val_acc_path(GRID, {0.0: 0.80, 1e-4: 0.85, 1e-2: 0.82, 1.0: 0.60})
    row = edges({GRID.name: path}, [GRID]).iloc[0]
    assert row["edge"] == "" and row["position"] == pytest.approx(0.2)
    (line,) = sweep_verdict({GRID.name: path}, NO_DIAGNOSIS, [GRID])
    assert "is inside its range [0, 1] (20% of the way up): narrow the next sweep to " in line
    assert line.endswith("[0, 0.01]")


def test_the_upper_edge_widens_x10() -> None:
    path = val_acc_path(PRESET, {0.0: 0.5, 1e-5: 0.6, 1e-4: 0.6, 1e-3: 0.7, 1e-2: 0.8, 0.1: 0.9})
    row = edges({PRESET.name: path}, [PRESET]).iloc[0]
    assert row["edge"] == "upper"
    assert (row["next_low"], row["next_high"]) == (0.0, pytest.approx(1.0))
    (line,) = sweep_verdict({PRESET.name: path}, NO_DIAGNOSIS, [PRESET])
    assert line.endswith(
        "is at the upper edge of its range [0, 0.1]: widen it upward, e.g. to [0, 1]"
    )


def test_the_lower_edge_is_zero_itself_not_the_first_tenth_of_a_linear_range() -> None:
    # 0's trials said nothing (no point): the smallest positive strength is no edge.
    path = val_acc_path(GRID, {1e-4: 0.85, 1e-2: 0.82, 1.0: 0.60})
    row = edges({GRID.name: path}, [GRID]).iloc[0]
    assert row["edge"] == ""
    # A plateau from 0 to 0.01 (60 % of the decades) reaches inward: not an edge either.
    path = val_acc_path(GRID, {0.0: 0.85, 1e-4: 0.80, 1e-2: 0.85, 1.0: 0.60})
    row = edges({GRID.name: path}, [GRID]).iloc[0]
    assert row["edge"] == "" and row["tied"] == 2


def test_a_best_of_zero_says_the_range_already_includes_no_regularization() -> None:
    path = val_acc_path(PRESET, {0.0: 0.9, 1e-5: 0.85, 1e-4: 0.8, 1e-3: 0.8, 1e-2: 0.7, 0.1: 0.5})
    row = edges({PRESET.name: path}, [PRESET]).iloc[0]
    assert row["edge"] == "lower" and row["position"] == 0.0
    assert (row["next_low"], row["next_high"]) == (0.0, 1e-5)
    (line,) = sweep_verdict({PRESET.name: path}, NO_DIAGNOSIS, [PRESET])
    assert line == (
        "best penalties.l2 (0, by median val_acc) is at the lower end of its range [0, 0.1], "
        "which already includes 0 and cannot be widened downward: 0 is no regularization, so "
        "the penalty may be unneeded; to look between 0 and the smallest strength tried, "
        "sweep e.g. [0, 1e-05]"
    )
    assert "compare with a run without it" not in line and "widen it downward" not in line


def _captured(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the module would have saved as PNG, kept open to read their axes."""
    kept: list[Figure] = []

    def keep(fig: Figure) -> bytes:
        kept.append(fig)
        return b""

    monkeypatch.setattr(figures, "_png", keep)
    return kept


def _check_axis(ax: Any, high: float) -> None:
    left, right = ax.get_xlim()
    assert ax.get_xscale() == "symlog"
    assert left == 0.0 and right >= high
    ticks = [t for t in ax.get_xticks() if left <= t <= right]
    assert ticks and min(ticks) >= 0.0


def test_the_path_figure_of_the_preset_grid_has_no_negative_axis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept = _captured(monkeypatch)
    path = val_acc_path(PRESET, {0.0: 0.9, 1e-5: 0.85, 1e-4: 0.8, 1e-3: 0.8, 1e-2: 0.7, 0.1: 0.5})
    assert path.attrs["log"]
    figures.path_figure(path, "val_acc")
    (fig,) = kept
    for ax in fig.axes:
        if ax.get_visible():
            _check_axis(ax, 0.1)
    plt.close(fig)


def test_the_side_by_side_path_figure_spans_every_experiment_from_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept = _captured(monkeypatch)
    wide = val_acc_path(GRID, {0.0: 0.9, 1e-4: 0.85, 1e-2: 0.8, 1.0: 0.5})
    narrow = val_acc_path(PRESET, {0.0: 0.9, 1e-5: 0.85, 1e-4: 0.8, 1e-3: 0.8, 1e-2: 0.7, 0.1: 0.5})
    analyses = [
        SimpleNamespace(name=name, path=name, objective=("val_acc", "max"), paths={GRID.name: p})
        for name, p in (("wide", wide), ("narrow", narrow))
    ]
    figures.compare_paths_figure(cast(Any, analyses), GRID.name)
    (fig,) = kept
    # Both experiments' strengths: up to 1 (the first one's), not only the last one's 0.1.
    _check_axis(fig.axes[0], 1.0)
    plt.close(fig)
