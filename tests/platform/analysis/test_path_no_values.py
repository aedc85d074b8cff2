"""A path panel whose metric no trial reported says "no values of <metric>" and shows
no y ticks (no made-up scale around nothing); the other panels keep theirs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from regtune.platform.analysis import figures as figures_module
from regtune.platform.analysis.figures import NO_VALUES, path_figure


def _path() -> pd.DataFrame:
    rows = []
    for strength, acc in ((1e-4, 0.9), (1e-3, 0.92), (1e-2, 0.85)):
        for metric, value in (("val_acc", acc), ("ece", np.nan)):
            rows.append(
                {
                    "parameter": "penalties.l2",
                    "metric": metric,
                    "strength": strength,
                    "median": value,
                    "q25": value,
                    "q75": value,
                    "n_trials": 1 if metric == "val_acc" else 0,
                    "best": strength == 1e-3,
                }
            )
    frame = pd.DataFrame(rows)
    frame.attrs["log"] = True
    return frame


def test_panel_without_values_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[Figure] = []
    monkeypatch.setattr(figures_module, "_png", lambda fig: drawn.append(fig) or b"")
    path_figure(_path(), "val_acc")
    panels = {ax.get_title(): ax for ax in drawn[0].axes if ax.get_visible()}
    ece, acc = panels["ece"], panels["val_acc"]
    assert [t.get_text() for t in ece.texts] == [NO_VALUES.format(metric="ece")]
    assert NO_VALUES.format(metric="ece") == "no values of ece"
    assert list(ece.get_yticks()) == []
    assert len(acc.texts) == 0
    assert len(acc.get_yticks()) > 0
    plt.close(drawn[0])
