"""The "unstable" label on real training histories, each threshold at its edge, and the
advice it gives for a swept vs a fixed learning rate.

The histories (``data/unstable_histories.json``, made by
``data/make_unstable_histories.py``) are MLPs trained on digits / adult subsets:
``unstable`` runs used a learning rate 300-10,000x the default, ``healthy`` runs the
default-ish rates on validation splits of 60-400 rows (many of them overfitting);
``high-lr`` runs (10-1000x) are kept for the report and not asserted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from regtune.platform.analysis import diagnosis as dg
from regtune.platform.analysis.diagnosis import diagnose, directions, explain
from regtune.platform.analysis.swept import SweptParameter
from regtune.platform.analysis.verdict import sweep_verdict
from regtune.platform.cli import app
from tests.platform.analysis.tables import epochs_table, write_experiment

HISTORIES = Path(__file__).with_name("data") / "unstable_histories.json"
LR = SweptParameter("training.lr", "loguniform", 1e-4, 0.3, True, True)
L2 = SweptParameter("penalties.l2", "loguniform", 1e-6, 1e-1, True, True)


def _load() -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = json.loads(HISTORIES.read_text())
    for run in runs:
        for key in ("train_loss", "val_loss"):
            run[key] = [math.nan if v is None else float(v) for v in run[key]]
    return runs


RUNS = _load()
KIND = {run["trial_id"]: run["kind"] for run in RUNS}


def _curves(kinds: tuple[str, ...]) -> dict[str, dict[str, list[float]]]:
    return {
        r["trial_id"]: {"train_loss": r["train_loss"], "val_loss": r["val_loss"]}
        for r in RUNS
        if r["kind"] in kinds
    }


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return diagnose(epochs_table(_curves(("unstable", "healthy", "high-lr"))))


def _old_rule_spikes(curve: dict[str, list[float]]) -> int:
    """Epochs the rule before this one called spikes: either loss >= 1.5x the epoch before
    and risen by >= 0.05 of its first epoch (a validation-only bump included)."""
    n = 0
    for key in ("train_loss", "val_loss"):
        v = np.asarray(curve[key])
        with np.errstate(invalid="ignore"):
            jump = (v[1:] >= 1.5 * v[:-1]) & (v[1:] - v[:-1] >= 0.05 * abs(v[0]))
        n += int(np.count_nonzero(jump))
    return n


def test_the_fixture_is_what_the_old_rule_got_wrong() -> None:
    """Real evidence, not a strawman: the old rule called healthy small-split runs unstable
    (a lone val bump) and missed runs whose first epoch exploded and then sat at chance."""
    kinds = [r["kind"] for r in RUNS]
    assert kinds.count("unstable") == 10 and kinds.count("healthy") == 15
    assert {r["n_val"] for r in RUNS if r["kind"] == "healthy"} <= set(range(60, 401))
    healthy = _curves(("healthy",))
    flagged = [t for t, c in healthy.items() if _old_rule_spikes(c)]
    assert len(flagged) == 3
    unstable = _curves(("unstable",))
    finite = {t: c for t, c in unstable.items() if np.isfinite(c["train_loss"]).all()}
    missed = [t for t, c in finite.items() if not _old_rule_spikes(c)]
    assert len(missed) == 5


def test_unstable_runs_are_unstable(table: pd.DataFrame) -> None:
    ids = [t for t, k in KIND.items() if k == "unstable"]
    assert table.loc[ids, "unstable"].all(), table.loc[ids, ["diagnosis", "first_epoch_ratio"]]
    # Each is caught by the optimiser's own evidence: NaN/inf or an exploded first epoch.
    caught = (table.loc[ids, "n_nonfinite"] > 0) | table.loc[ids, "exploded"]
    assert caught.all()


def test_healthy_small_split_runs_are_not_unstable(table: pd.DataFrame) -> None:
    ids = [t for t, k in KIND.items() if k == "healthy"]
    rows = table.loc[ids]
    assert not rows["unstable"].any(), rows.loc[rows["unstable"], ["spiked", "val_noise"]]
    assert (rows["n_spikes"] == 0).all() and (rows["spiked"] == "").all()
    # The margins the constants keep on this evidence.
    assert rows["first_epoch_ratio"].max() < dg.EXPLODE_RATIO / 1.5


def test_the_users_val_bump_is_not_a_spike() -> None:
    """val 0.143 -> 0.216 (1.51x, a rise of 0.073 >= 0.05 of 0.9) on a curve whose val loss
    moves by 0.03 an epoch (median): 2.4x its noise, below VAL_SPIKE_NOISE."""
    val = [0.9, 0.3, 0.21, 0.16, 0.15, 0.143, 0.216, 0.15, 0.14, 0.145, 0.135]
    train = [1.2, 0.4, 0.2, 0.12, 0.09, 0.07, 0.06, 0.05, 0.045, 0.04, 0.035]
    row = diagnose(epochs_table({"user": {"train_loss": train, "val_loss": val}})).iloc[0]
    bump, before = 0.216, 0.143  # what the old rule called a spike: both tests pass
    assert bump / before >= dg.SPIKE_RATIO and bump - before >= dg.SPIKE_MIN_RISE * val[0]
    assert row["val_noise"] == pytest.approx(0.03)
    assert not row["unstable"] and row["n_spikes"] == 0 and row["spiked"] == ""


def _val_bump(rise: float) -> dict[str, list[float]]:
    # |steps| 0.5, 0.0625 x4, rise, rise: median 0.0625 when rise > 0.0625.
    return {
        "train_loss": [1.0, 0.5, 0.4, 0.35, 0.3, 0.28, 0.26, 0.25],
        "val_loss": [1.0, 0.5, 0.5625, 0.5, 0.5625, 0.5, 0.5 + rise, 0.5],
    }


def test_val_spike_noise_edge() -> None:
    at = dg.VAL_SPIKE_NOISE * 0.0625
    result = diagnose(epochs_table({"at": _val_bump(at), "below": _val_bump(at - 0.0625)}))
    assert result["val_noise"].tolist() == [0.0625, 0.0625]
    assert result.loc["at", "unstable"] and result.loc["at", "spiked"] == "val"
    assert result.loc["at", "n_spikes"] == 1
    assert not result.loc["below", "unstable"] and result.loc["below", "n_spikes"] == 0
    text = explain(result.loc["at"].to_dict())
    assert "1 spike(s) of the val loss" in text and "6x the trial's val noise 0.0625" in text


def test_train_spike_needs_no_noise_margin() -> None:
    """A training-loss spike is the optimiser's: it counts at SPIKE_RATIO alone."""
    curve = {
        "train_loss": [1.0, 0.5, 0.4, 0.4 * dg.SPIKE_RATIO, 0.35, 0.3],
        "val_loss": [1.0, 0.6, 0.5, 0.55, 0.5, 0.45],
    }
    row = diagnose(epochs_table({"t": curve})).iloc[0]
    assert row["unstable"] and row["spiked"] == "train" and row["n_spikes"] == 1


def _first_epoch(train0: float, val0: float) -> dict[str, list[float]]:
    return {
        "train_loss": [train0, 0.3, 0.25, 0.2, 0.18],
        "val_loss": [val0, val0 * 0.96, val0 * 0.92, val0 * 0.88, val0 * 0.84],
    }


def test_explode_ratio_edge() -> None:
    # 0.25 at the end of an epoch whose mean was 6x that (1.25 nats above): exploded.
    at, below = dg.EXPLODE_RATIO * 0.25, (dg.EXPLODE_RATIO - 0.25) * 0.25
    result = diagnose(
        epochs_table({"at": _first_epoch(at, 0.25), "below": _first_epoch(below, 0.25)})
    )
    assert result.loc["at", "first_epoch_ratio"] == dg.EXPLODE_RATIO
    assert result.loc["at", "exploded"] and result.loc["at", "unstable"]
    assert result.loc["at", "n_spikes"] == 0
    assert not result.loc["below", "exploded"] and not result.loc["below", "unstable"]
    text = explain(result.loc["at"].to_dict())
    assert "the first epoch exploded (mean train loss 1.5 is 6x the val loss at its end" in text


def test_explode_min_excess_edge() -> None:
    """An easy task learnt in one epoch: a large ratio, but not EXPLODE_MIN_EXCESS nats."""
    at = 0.125 + dg.EXPLODE_MIN_EXCESS
    below = 0.125 + dg.EXPLODE_MIN_EXCESS - 0.125
    result = diagnose(
        epochs_table({"at": _first_epoch(at, 0.125), "below": _first_epoch(below, 0.125)})
    )
    assert result.loc["below", "first_epoch_ratio"] >= dg.EXPLODE_RATIO
    assert result.loc["at", "exploded"] and not result.loc["below", "exploded"]
    assert not result.loc["below", "unstable"]


def test_advice_for_a_swept_learning_rate(table: pd.DataFrame) -> None:
    ids = [t for t, k in KIND.items() if k == "unstable"][:4]
    (line,) = sweep_verdict({}, table.loc[ids], [L2, LR])
    assert line.startswith("100% of 4 trials are unstable (")
    assert line.endswith(": lower the upper bound of training.lr (swept up to 0.3)")
    assert "training.lr (this sweep kept it fixed)" not in line


def test_advice_for_a_fixed_learning_rate(table: pd.DataFrame) -> None:
    ids = [t for t, k in KIND.items() if k == "unstable"]
    (line,) = sweep_verdict({}, table.loc[ids], [L2])
    assert line == (
        "100% of 10 trials are unstable (2 with NaN/inf losses, 8 whose first epoch exploded, "
        "1 with a train-loss spike, 2 with a val-loss spike beyond its noise): "
        "lower training.lr (this sweep kept it fixed)"
    )
    assert "upper bound" not in line


def test_healthy_sweep_gets_no_instability_line(table: pd.DataFrame) -> None:
    ids = [t for t, k in KIND.items() if k == "healthy"]
    assert not any("unstable" in line for line in sweep_verdict({}, table.loc[ids], [L2, LR]))


def test_analyze_end_to_end_on_stored_histories(tmp_path: Path) -> None:
    """Real Parquet through the results store, `regtune analyze --json`: the sweep varied
    penalties.l2 only, so the advice names training.lr itself, not a bound."""
    picked = [r for r in RUNS if r["kind"] in ("unstable", "healthy")][::3]
    curves = {
        r["trial_id"]: {"train_loss": r["train_loss"], "val_loss": r["val_loss"]} for r in picked
    }
    configs = {
        r["trial_id"]: {"penalties": {"l2": 10.0 ** -(i % 4 + 2)}, "training": {"lr": 1e-3}}
        for i, r in enumerate(picked)
    }
    exp = tmp_path / "lr_fixed"
    write_experiment(str(exp), curves, configs, max_t=25)
    result = CliRunner().invoke(app, ["analyze", str(exp), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["experiments"][0]
    n_unstable = sum(1 for r in picked if r["kind"] == "unstable")
    assert (
        data["diagnosis"]["counts"].get("unstable", 0)
        + sum(v for k, v in data["diagnosis"]["counts"].items() if k.startswith("unstable+"))
        == n_unstable
    )
    lines = [line for line in data["verdict"] if "unstable" in line]
    assert len(lines) == 1 and lines[0].endswith("lower training.lr (this sweep kept it fixed)")


def test_a_trial_is_told_to_lower_the_learning_rate_only(table: pd.DataFrame) -> None:
    row = table.loc["adult-adamw-lr0.3"].to_dict()
    batch = SweptParameter("training.batch_size", "grid", 32, 256, True, True)
    assert directions(row, [L2, LR, batch]) == {
        "penalties.l2": "keep",
        "training.lr": "lower",
        "training.batch_size": "keep",
    }
    swept = explain(row, [L2, LR])
    assert swept.endswith("penalties.l2: keep; training.lr: lower")
    assert "(not swept)" not in swept
    fixed = explain(row, [L2])
    assert "-> lower training.lr (not swept)" in fixed and fixed.endswith("penalties.l2: keep")
    # Its val and train loss spiked in the same epoch (0.507 -> 8.26, 0.532 -> 3.93): one spike.
    assert "the first epoch exploded (mean train loss 9.84 is 24x the val loss" in fixed
    assert "1 spike(s) of the train and val loss" in fixed


@pytest.mark.parametrize("longest", [8, 400])
def test_val_noise_is_each_trials_median_step(longest: int) -> None:
    """``val_noise`` on shuffled ragged trials with NaN losses equals pandas' per-trial median
    of |val[t] - val[t-1]| (one trial of 400 epochs takes the very-ragged path)."""
    rng = np.random.default_rng(longest)
    lengths = np.append(rng.integers(1, 9, 300), longest)
    curves = {}
    for i, n in enumerate(lengths):
        val = rng.random(n)
        val[rng.random(n) < 0.1] = np.nan
        curves[f"t{i}"] = {"train_loss": list(np.full(n, 1.0)), "val_loss": list(val)}
    epochs = epochs_table(curves).sample(frac=1.0, random_state=0)
    got = diagnose(epochs)["val_noise"]
    expected = {
        t: pd.Series(np.abs(np.diff(np.asarray(c["val_loss"])))).median() for t, c in curves.items()
    }
    pd.testing.assert_series_equal(
        got, pd.Series(expected).reindex(got.index), check_names=False, check_index_type=False
    )
