"""Paths, heat map, front and hypervolume on hand-made per-trial tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regtune.errors import DataError, SpecError
from regtune.platform.analysis.front import pareto_table, resolve_objectives
from regtune.platform.analysis.path import bin_strengths, heatmap, regularization_path
from regtune.platform.analysis.summary import trial_summary
from regtune.platform.analysis.swept import SweptParameter, find_parameter, swept_parameters
from regtune.platform.analysis.verdict import edges, sweep_verdict
from tests.platform.analysis.tables import HEALTHY, epochs_table

L2 = SweptParameter("penalties.l2", "grid", 1e-4, 1e-1, True, True)
DROP = SweptParameter("model.dropout", "grid", 0.0, 0.4, False, True)


def _summary() -> pd.DataFrame:
    # Grid l2 x seed: accuracy peaks at l2 = 1e-2; two seeds give a spread.
    rows = []
    acc = {1e-4: 0.80, 1e-3: 0.85, 1e-2: 0.90, 1e-1: 0.60}
    for l2, base in acc.items():
        for seed, shift in ((0, -0.01), (1, 0.01)):
            rows.append(
                {
                    "trial_id": f"l2={l2}-s{seed}",
                    "config.penalties.l2": l2,
                    "config.model.dropout": 0.0 if l2 < 1e-2 else 0.4,
                    "config.training.seed": seed,
                    "val_acc": base + shift,
                    "train_loss": 0.1 / (l2 * 100 + 0.01),
                    "val_loss": 1.0 - base,
                }
            )
    return pd.DataFrame(rows).set_index("trial_id")


def test_path_median_spread_and_best() -> None:
    path = regularization_path(_summary(), L2, ("val_acc", "max"), ["val_acc", "val_loss"])
    acc = path[path["metric"] == "val_acc"].reset_index(drop=True)
    assert acc["strength"].tolist() == [1e-4, 1e-3, 1e-2, 1e-1]
    assert acc["n_trials"].tolist() == [2, 2, 2, 2]
    np.testing.assert_allclose(acc["median"], [0.80, 0.85, 0.90, 0.60])
    # Quartiles of two values a +- 0.01: a -+ 0.005.
    np.testing.assert_allclose(acc["q25"], [0.795, 0.845, 0.895, 0.595])
    np.testing.assert_allclose(acc["q75"], [0.805, 0.855, 0.905, 0.605])
    assert acc["best"].tolist() == [False, False, True, False]
    loss = path[path["metric"] == "val_loss"]
    assert loss["best"].tolist() == [False, False, True, False]  # marked by the objective
    assert path.attrs["log"] is True


def test_path_bins_continuous_strengths_on_a_log_scale() -> None:
    values = np.geomspace(1e-6, 1e-1, 50)
    grouped = bin_strengths(values, log=True, bins=5)
    assert grouped.strength.size == 5
    counts = np.bincount(grouped.index)
    assert counts.tolist() == [10, 10, 10, 10, 10]  # equal widths in log space
    assert np.all(np.diff(grouped.strength) > 0)
    with_zero = bin_strengths(np.append(values, 0.0), log=True, bins=5)
    assert with_zero.strength[0] == 0.0 and with_zero.strength.size == 6


def test_heatmap_cells() -> None:
    heat = heatmap(_summary(), L2, DROP, "val_acc")
    assert len(heat) == 4
    cell = heat[(heat["x"] == 1e-2) & (heat["y"] == 0.4)]
    assert cell["median"].iloc[0] == pytest.approx(0.90)
    assert cell["n_trials"].iloc[0] == 2
    assert heat.attrs["x"] == "penalties.l2" and heat.attrs["y_log"] is False
    assert heat["n_degenerate"].tolist() == [0, 0, 0, 0]  # no degenerate column: none
    assert heat.attrs["n_degenerate"] == 0 and heat.attrs["include_degenerate"] is False


def test_heatmap_leaves_degenerate_trials_out_of_its_cells_as_the_path_does() -> None:
    """l2 = 0.1 only gave constant predictors, l2 = 0.01 one of two: by default they are
    out of the cells' counts and medians (counted in n_degenerate; a cell of only those
    stays, with no median); include_degenerate keeps them in, counted in both."""
    constant = ["l2=0.1-s0", "l2=0.1-s1", "l2=0.01-s1"]
    summary = _summary().assign(degenerate=lambda f: f.index.isin(constant))

    def cells(table: pd.DataFrame) -> dict[tuple[float, float], tuple[int, int, float]]:
        return {
            (float(r.x), float(r.y)): (int(r.n_trials), int(r.n_degenerate), float(r.median))
            for r in table.itertuples(index=False)
        }

    default = cells(heatmap(summary, L2, DROP, "val_acc"))
    assert default[(1e-4, 0.0)] == (2, 0, pytest.approx(0.80))
    assert default[(1e-2, 0.4)] == (1, 1, pytest.approx(0.89))  # s0's 0.89; s1's 0.91 out
    n, d, median = default[(1e-1, 0.4)]
    assert (n, d) == (0, 2) and np.isnan(median)
    kept = heatmap(summary, L2, DROP, "val_acc", include_degenerate=True)
    assert cells(kept)[(1e-2, 0.4)] == (2, 1, pytest.approx(0.90))
    assert cells(kept)[(1e-1, 0.4)] == (2, 2, pytest.approx(0.60))
    assert kept.attrs["n_degenerate"] == 3 and kept.attrs["include_degenerate"] is True
    # The same counts as the path's points of that strength.
    path = regularization_path(summary, L2, ("val_acc", "max"), ["val_acc"])
    assert path["n_trials"].tolist() == [2, 2, 1, 0]
    assert path["n_degenerate"].tolist() == [0, 0, 1, 2]


def test_unknown_metric_and_parameter_list_what_is_there() -> None:
    with pytest.raises(SpecError, match=r"unknown metric 'roc_auc'; metrics present: .*val_acc"):
        regularization_path(_summary(), L2, ("val_acc", "max"), ["roc_auc"])
    swept = swept_parameters(_summary())
    with pytest.raises(SpecError, match=r"unknown swept parameter 'l1'; swept parameters: "):
        find_parameter(swept, "l1", "penalty")
    assert find_parameter(swept, "l2", "penalty").name == "penalties.l2"
    text = SweptParameter("penalties.fairness.kind", "choice", None, None, False, False)
    frame = _summary().assign(**{"config.penalties.fairness.kind": "dp"})
    with pytest.raises(DataError, match="non-numeric"):
        regularization_path(frame, text, ("val_acc", "max"))


def test_front_known_answer_and_hypervolume() -> None:
    summary = pd.DataFrame(
        {
            "val_acc": [0.9, 0.8, 0.7, 0.75, 0.95, np.nan],
            "ece": [0.10, 0.05, 0.02, 0.06, 0.0, 0.01],
            "degenerate": [False, False, False, False, True, False],
        },
        index=pd.Index(["a", "b", "c", "dominated", "constant", "nan"], name="trial_id"),
    )
    objectives = resolve_objectives(["val_acc", "ece"])
    assert objectives == (("val_acc", "max"), ("ece", "min"))
    front = pareto_table(summary, objectives, reference={"val_acc": 0.5, "ece": 0.2})
    assert sorted(front.front.index) == ["a", "b", "c"]
    assert front.table.loc["constant", "excluded"] == "degenerate"
    assert front.table.loc["nan", "excluded"] == "no value"
    assert list(front.dominated.index) == ["dominated"]
    # Minimisation space: (-0.9, .10), (-0.8, .05), (-0.7, .02) against (-0.5, 0.2):
    # strips 0.4 x 0.10 + 0.3 x 0.05 + 0.2 x 0.03 = 0.04 + 0.015 + 0.006.
    assert front.hypervolume == pytest.approx(0.061)
    assert front.reference == {"val_acc": 0.5, "ece": 0.2}
    with_constant = pareto_table(summary, objectives, include_degenerate=True)
    assert "constant" in with_constant.front.index
    # Default reference: worst value + 10 % of the range, stated with the volume.
    default = pareto_table(summary, objectives)
    assert default.reference["val_acc"] == pytest.approx(0.7 - 0.1 * 0.2)
    assert default.reference["ece"] == pytest.approx(0.10 + 0.1 * 0.08)


def test_front_errors() -> None:
    summary = pd.DataFrame({"val_acc": [0.9]}, index=pd.Index(["a"], name="trial_id"))
    with pytest.raises(SpecError, match=r"unknown metric 'dp_diff'; metrics present: val_acc"):
        pareto_table(summary, [("val_acc", "max"), ("dp_diff", "min")])
    with pytest.raises(SpecError, match="no direction known"):
        resolve_objectives(["my_metric"])
    with pytest.raises(SpecError, match="reference: needs one finite value per objective"):
        pareto_table(summary, [("val_acc", "max")], reference={"ece": 1.0})


def test_verdict_edges() -> None:
    summary = _summary()
    wide = SweptParameter("penalties.l2", "loguniform", 1e-4, 1e-1, True, True)
    upper = summary.copy()
    upper.loc[upper["config.penalties.l2"] == 1e-1, "val_acc"] = 0.99
    path = regularization_path(upper, wide, ("val_acc", "max"))
    table = edges({"penalties.l2": path}, [wide])
    assert table.loc[0, "edge"] == "upper"
    assert table.loc[0, "next_high"] == pytest.approx(1.0)
    empty = pd.DataFrame(columns=["too_short"])
    lines = sweep_verdict({"penalties.l2": path}, empty, [wide])
    assert "at the upper edge of its range [0.0001, 0.1]: widen it upward" in lines[0]
    inside = regularization_path(summary, wide, ("val_acc", "max"))
    lines = sweep_verdict({"penalties.l2": inside}, empty, [wide])
    assert "inside its range" in lines[0]


def test_verdict_ties_are_not_an_edge() -> None:
    """Strengths tied for best that reach inward from an edge say nothing past it
    (the quickstart: three of six digits trials share the best val_acc)."""
    wide = SweptParameter("penalties.l2", "loguniform", 1e-4, 1e-1, True, True)
    plateau = _summary()
    plateau.loc[plateau["config.penalties.l2"] <= 1e-2, "val_acc"] = 0.9
    # val_loss first: the tie is read from the objective's medians, not the first metric's.
    path = regularization_path(plateau, wide, ("val_acc", "max"), ["val_loss", "val_acc"])
    row = edges({"penalties.l2": path}, [wide]).iloc[0]
    assert row["edge"] == "" and row["tied"] == 3
    assert (row["tied_low"], row["tied_high"]) == (1e-4, 1e-2)
    # The neighbours span the whole range: nothing to narrow, and the verdict says so.
    assert (row["next_low"], row["next_high"]) == (path["low"].min(), path["high"].max())
    empty = pd.DataFrame(columns=["too_short"])
    (line,) = sweep_verdict({"penalties.l2": path}, empty, [wide])
    assert line.startswith("3 values of penalties.l2 tie for best (by median val_acc), from 0.0001")
    assert "narrow the next sweep" not in line and "too few strengths" in line
    # Tied at the edge alone (both seeds of the lowest strength): still the edge.
    lowest = _summary()
    lowest.loc[lowest["config.penalties.l2"] == 1e-4, "val_acc"] = 0.95
    path = regularization_path(lowest, wide, ("val_acc", "max"), ["val_loss", "val_acc"])
    row = edges({"penalties.l2": path}, [wide]).iloc[0]
    assert row["edge"] == "lower" and row["tied"] == 1


def test_summary_picks_the_best_epoch() -> None:
    epochs = epochs_table({"t": HEALTHY, "u": {"train_loss": [1, 1], "val_loss": [0.5, 0.9]}})
    summary = trial_summary(epochs, ("val_loss", "min"), at="best")
    assert summary.loc["t", "iteration"] == 8 and summary.loc["u", "iteration"] == 1
    assert summary.loc["u", "val_loss"] == 0.5
    last = trial_summary(epochs, ("val_loss", "min"), at="last")
    assert last.loc["u", "val_loss"] == 0.9
    with pytest.raises(SpecError, match="at: 'first' is not allowed"):
        trial_summary(epochs, ("val_loss", "min"), at="first")  # type: ignore[arg-type]


def test_objective_directions_follow_the_stores_one_rule() -> None:
    from regtune.platform.analysis.run import analyze_tables
    from regtune.platform.results.schema import metric_mode

    names = ["test_acc", "test_loss", "epoch_time_s", "robust_acc", "val_acc", "ece"]
    assert resolve_objectives(names) == tuple((n, metric_mode(n)) for n in names)
    assert dict(resolve_objectives(["test_acc", "test_loss"])) == {
        "test_acc": "max",
        "test_loss": "min",
    }
    final = {"a": {"test_acc": [np.nan, np.nan, 0.8]}, "b": {"test_acc": [np.nan, np.nan, 0.9]}}
    curves = {
        "a": {k: v[:3] for k, v in HEALTHY.items()},
        "b": {k: v[:3] for k, v in HEALTHY.items()},
    }
    epochs = epochs_table(curves, {"a": {"l2": 0.1}, "b": {"l2": 1.0}}, extra=final)
    analysis = analyze_tables(epochs, objectives=["test_acc"])
    assert analysis.objective == ("test_acc", "max")
    assert analysis.best is not None and analysis.best.trial_id == "b"


def test_a_trial_sits_on_the_path_at_the_config_of_its_chosen_epoch() -> None:
    """PBT perturbs a trial's penalty as it trains: its best epoch (the third) ran with
    l2 = 0.01, not the 1e-4 it started with."""
    curve = {"train_loss": [1.0, 0.8, 0.5, 0.6], "val_loss": [1.0, 0.9, 0.4, 0.7]}
    epochs = epochs_table({"p": curve}, extra={"p": {"config.l2": [1e-4, 1e-4, 1e-2, 1e-2]}})
    # Rows out of order: the chosen row is found through the segments' sort.
    epochs = epochs.iloc[::-1].reset_index(drop=True)
    summary = trial_summary(epochs, ("val_loss", "min"), at="best")
    assert summary.loc["p", "iteration"] == 3
    assert summary.loc["p", "config.l2"] == 1e-2
    last = trial_summary(epochs, ("val_loss", "min"), at="last")
    assert last.loc["p", "iteration"] == 4 and last.loc["p", "config.l2"] == 1e-2


def test_a_trial_is_represented_by_the_epoch_whose_weights_it_keeps() -> None:
    """The trainer's rule: a fairness bound's reported kept_epoch, else early stopping's
    best epoch (its metric, mode and min_delta), else the last epoch."""
    import math

    curve = {"train_loss": [1.0, 0.8, 0.6, 0.5, 0.45], "val_loss": [1.0, 0.5, 0.49, 0.7, 0.8]}
    nan = [math.nan] * 4
    extra = {
        # early stopping on val_loss: epoch 3 (0.49 < 0.5); with min_delta 0.05: epoch 2
        "es": {"config.training.early_stopping.patience": [2.0] * 5},
        "es_delta": {
            "config.training.early_stopping.patience": [2.0] * 5,
            "config.training.early_stopping.min_delta": [0.05] * 5,
        },
        # early stopping on val_acc (max): val_acc = 1 - val_loss / 2.5 peaks at epoch 3
        "es_acc": {
            "config.training.early_stopping.patience": [2.0] * 5,
            "config.training.early_stopping.metric": ["val_acc"] * 5,
            "config.training.early_stopping.mode": ["max"] * 5,
        },
        # a fairness bound's final report says epoch 2, whatever early stopping found
        "fair": {
            "config.training.early_stopping.patience": [2.0] * 5,
            "kept_epoch": [*nan, 2.0],
        },
        # no early stopping, no bound: the last epoch's weights stay
        "plain": {},
        # today's trainer names the kept epoch in every row: the last row's decides,
        # whatever the config would rebuild (a PBT exploit can move it back)
        "reported": {
            "config.training.early_stopping.patience": [2.0] * 5,
            "kept_epoch": [1.0, 2.0, 3.0, 4.0, 1.0],
        },
    }
    epochs = epochs_table({k: curve for k in extra}, extra=extra)
    epochs = epochs.sample(frac=1.0, random_state=0).reset_index(drop=True)  # any row order
    kept = trial_summary(epochs, ("val_acc", "max"))["iteration"].to_dict()
    assert kept == {"es": 3, "es_delta": 2, "es_acc": 3, "fair": 2, "plain": 5, "reported": 1}
    best = trial_summary(epochs, ("val_acc", "max"), at="best")["iteration"]
    assert set(best) == {3}


def test_a_running_trial_under_a_fairness_bound_keeps_the_bounds_choice() -> None:
    """Before its final report (no kept_epoch yet) the bound's rule is applied to the
    rows so far: the best val_acc among epochs with dp_diff <= bound - margin."""
    curve = {"train_loss": [1.0, 0.8, 0.6, 0.5], "val_loss": [1.0, 0.5, 0.3, 0.2]}
    fair = {
        "config.penalties.fairness.kind": ["dp"] * 4,
        "config.penalties.fairness.training_method": ["lagrangian"] * 4,
        "config.penalties.fairness.bound": [0.1] * 4,
        "config.penalties.fairness.margin": [0.0] * 4,
        "dp_diff": [0.05, 0.08, 0.2, 0.3],
    }
    epochs = epochs_table({"r": curve}, extra={"r": fair})
    summary = trial_summary(epochs, ("val_acc", "max"))
    assert summary.loc["r", "iteration"] == 2  # epochs 3-4 break the bound


def test_a_narrowed_read_keeps_what_tells_the_kept_epoch() -> None:
    """`--metric val_acc` on results stored before kept_epoch: early stopping may
    have watched any platform metric (here ece), so its column is still read."""
    from regtune.platform.analysis.run import needed_columns

    available = ["iteration", "trial_id", "val_acc", "val_loss", "train_loss", "ece", "other"]
    available.append("config.training.early_stopping.metric")
    wanted = needed_columns(available, None, metrics=["val_acc"])
    assert {"ece", "config.training.early_stopping.metric"} <= set(wanted)
    assert "other" not in wanted


def test_path_leaves_constant_predictors_out_of_its_medians_and_best() -> None:
    # Both l2 = 0.1 trials predict one class; their 0.99 is the majority class's share.
    summary = _summary()
    strong = summary["config.penalties.l2"] == 1e-1
    summary.loc[strong, "val_acc"] = 0.99
    summary["degenerate"] = strong
    path = regularization_path(summary, L2, ("val_acc", "max"), ["val_acc"])
    assert path["strength"].tolist() == [1e-4, 1e-3, 1e-2, 1e-1]  # the strength still shows
    assert path["best"].tolist() == [False, False, True, False]
    assert path["n_trials"].tolist() == [2, 2, 2, 0]
    assert path["n_degenerate"].tolist() == [0, 0, 0, 2]
    assert np.isnan(path["median"].iloc[3]) and path.attrs["n_degenerate"] == 2
    # Not an upper edge: a stronger strength was tried past the best (and gave constants).
    row = edges({"penalties.l2": path}, [L2]).iloc[0]
    assert row["best"] == 1e-2 and row["edge"] == ""
    kept = regularization_path(
        summary, L2, ("val_acc", "max"), ["val_acc"], include_degenerate=True
    )
    assert kept["best"].tolist() == [False, False, False, True]
    assert kept["n_trials"].tolist() == [2, 2, 2, 2]
