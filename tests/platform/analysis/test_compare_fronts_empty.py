"""The side-by-side fronts label an experiment whose front holds no trial "front empty",
not "hypervolume 0" (a number that looks measured, against a made-up reference)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from regtune.platform.analysis import figures as figures_module
from regtune.platform.analysis.figures import FRONT_EMPTY, compare_fronts_figure
from regtune.platform.analysis.front import pareto_table

OBJECTIVES = [("val_acc", "max"), ("ece", "min")]


def _front(ece: list[float]) -> Any:
    summary = pd.DataFrame(
        {"val_acc": [0.9, 0.95, 0.8], "ece": ece},
        index=pd.Index(["a", "b", "c"], name="trial_id"),
    )
    return pareto_table(summary, OBJECTIVES)


def test_empty_front_is_labelled_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[Figure] = []
    monkeypatch.setattr(figures_module, "_png", lambda fig: drawn.append(fig) or b"")
    full = _front([0.1, 0.2, 0.05])
    empty = _front([np.nan, np.nan, np.nan])  # every trial has no ece
    assert len(empty.front) == 0
    analyses: Any = [
        SimpleNamespace(name="quick", path="quick", front=full),
        SimpleNamespace(name="qsnan", path="qsnan", front=empty),
    ]
    compare_fronts_figure(analyses)
    labels = drawn[0].axes[0].get_legend_handles_labels()[1]
    assert f"qsnan ({FRONT_EMPTY})" in labels
    assert FRONT_EMPTY == "front empty"
    assert not any(label.startswith("qsnan (hypervolume") for label in labels)
    assert any(label.startswith("quick (hypervolume") for label in labels)
    plt.close(drawn[0])
