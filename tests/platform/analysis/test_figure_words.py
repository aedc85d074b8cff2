"""What the front figure's legend and the heat map's caption say was left out: trials
that lost stored epochs (``incomplete``) and failed trials. Real Parquet written by the
results store."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from regtune.platform.analysis.figures import front_plot, heatmap_caption
from regtune.platform.analysis.front import Front
from regtune.platform.analysis.report import write_html
from regtune.platform.analysis.run import analyze_experiment
from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import HEALTHY, OVERFIT, UNDERFIT, write_experiment
from tests.platform.analysis.test_load_incomplete import _split_and_truncate, _write


def _legend(front: Front) -> list[str]:
    fig = front_plot(front)
    try:
        legend = fig.axes[0].get_legend()
        return [t.get_text() for t in legend.get_texts()]
    finally:
        plt.close(fig)


def test_the_front_legend_names_incomplete_trials(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _write(exp)
    _split_and_truncate(exp)  # b and c lose epochs
    analysis = analyze_experiment(str(exp))
    assert analysis.front is not None
    assert set(analysis.front.table["excluded"]) == {"", "incomplete"}
    labels = _legend(analysis.front)
    assert "excluded (incomplete)" in labels, labels
    assert not any("error / degenerate / no value" in label for label in labels)


def test_the_heatmap_caption_says_failed_trials_were_left_out(tmp_path: Path) -> None:
    exp = tmp_path / "heat"
    curves = {"a": HEALTHY, "b": OVERFIT, "c": UNDERFIT, "f": HEALTHY}
    configs = {
        t: {"penalties": {"l2": l2}, "model": {"dropout": dropout}}
        for t, l2, dropout in (
            ("a", 1e-4, 0.1),
            ("b", 1e-6, 0.2),
            ("c", 1e-2, 0.3),
            ("f", 1e-3, 0.05),
        )
    }
    spec = load_spec("quickstart").to_dict()
    write_experiment(str(exp), curves, configs, spec=spec, failed=["f"])
    analysis = analyze_experiment(str(exp))
    assert analysis.heatmap is not None and analysis.heatmap.attrs["n_failed"] == 1
    caption = heatmap_caption(analysis.heatmap)
    assert caption == "1 failed trial(s) (status error) left out: in no cell"
    report = write_html([analysis], tmp_path / "r.html", None, {})
    assert "1 failed trial(s) (status error) left out: in no cell" in Path(report).read_text()
