"""The report's header counts trials in words a reader expects."""

from __future__ import annotations

from pathlib import Path

from regtune.platform.analysis.report import render_html
from regtune.platform.analysis.run import analyze_experiment
from tests.platform.analysis.tables import HEALTHY, write_experiment


def test_one_trial_is_counted_in_the_singular(tmp_path: Path) -> None:
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    write_experiment(one, {"t0": HEALTHY}, {"t0": {"penalties": {"l2": 0.01}}})
    write_experiment(
        two, {"t0": HEALTHY, "t1": HEALTHY}, {t: {"penalties": {"l2": 0.01}} for t in ("t0", "t1")}
    )
    assert "<p>1 trial; objective" in render_html([analyze_experiment(one)], images={})
    assert "<p>2 trials; objective" in render_html([analyze_experiment(two)], images={})
