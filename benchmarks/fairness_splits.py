"""Fairness over several splits: regtune DP/EO (selection, post-processing,
calibration) against fairlearn's ExponentiatedGradient and ThresholdOptimizer.

Run::

    python -m benchmarks.fairness_splits [--smoke-test] [--select]
        [--datasets adult german compas] [--split-seeds 0 1 2] [--seeds 0 1 2]
    python -m benchmarks.fairness_splits --select-adult-eo [--scores-cache DIR]
    python -m benchmarks.fairness_splits --select-adult-eo-crossfit [--scores-cache DIR]
    python -m benchmarks.fairness_splits --select-adult-eo-base [--scores-cache DIR]
    python -m benchmarks.fairness_splits --select-pooled     # German/COMPAS, pooled
    python -m benchmarks.fairness_splits --apply-pooled fresh3
    python -m benchmarks.fairness_splits --select-repooled   # fifth selection, 0-14
    python -m benchmarks.fairness_splits --select-adult-eo-ensemble [--scores-cache DIR]
    python -m benchmarks.fairness_splits --fresh --select [--datasets ...]
    python -m benchmarks.fairness_splits --measure-floor [--datasets adult german compas]

Every contender sees the same splits (``dataset.split_seed``): it fits on the
train split, regtune also selects epochs / fits thresholds / temperatures on
the validation split, and all are scored on the test split with regtune's
metric functions (15-bin ECE, ``fairness.dp_difference`` /
``eo_difference``). regtune trains once per split and training seed. The
fairlearn contenders are deterministic given the split (lbfgs), so each is
fitted once per split; the training seed only draws their randomised
decisions (``predict(random_state=seed)``).

Reported per dataset and contender, over splits x seeds: mean, worst case
(lowest accuracy, largest gap, largest ECE) and a 95% t-interval over the
split seeds' means (runs of one split seed share its test rows, so the split
seed is the unit; before 2026-12-03, stop 30, the interval was over runs and
understated split-to-split uncertainty), plus, for regtune, the mean of each run's 95% bootstrap
interval of its test gap. The goals of issue 9 are checked in
:data:`ADULT_GOALS` and, for German and COMPAS, against fairlearn's mean
accuracy and gap (:func:`goals`).

Settings: the Adult configs are fixed in :data:`ADULT_CONFIGS`; the German
and COMPAS configs, one per split seed, are read from
``benchmarks/results/fairness_splits_selection_<dataset>.json``, written by
``--select`` (:mod:`benchmarks.fairness_selection`: chosen on split ``k``'s
training and validation rows only, never its test rows). ``--select-adult-eo``
assesses robust post-processing thresholds (``robust_quantile``) for Adult
EO on validation only and writes
``benchmarks/results/fairness_splits_selection_adult_eo.json``; the report
says what it chose (:func:`robust_text`).

``--fresh`` re-checks everything on split seeds :data:`FRESH_SPLIT_SEEDS`,
which no selection, validation or test run had used: its selection and run
files carry ``_fresh``/``-fresh`` in their names, and the report gains a
section on those split seeds alone and on all split seeds together
(:func:`fresh_section`). The methods, candidates, targets and rules are the
same code as for the issue's split seeds.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from benchmarks import fairness_floor, fairness_pooled, fairness_repooled
from benchmarks.common import (
    RESULTS_DIR,
    machine_facts,
    markdown_table,
    mean_interval,
    peak_rss_mb,
    results_dir,
    write_results,
)
from benchmarks.fairness_base import select_adult_eo_base
from benchmarks.fairness_chance import (
    CHANCE_DRAWS,
    EXACT_SPLITS,
    chance_pass_rate,
    split_differences,
)
from benchmarks.fairness_contenders import (
    FAIRLEARN,
    fairlearn_fit,
    fairlearn_scores,
    seeded_config,
)
from benchmarks.fairness_crossfit import select_adult_eo_crossfit
from benchmarks.fairness_ensemble import select_adult_eo_ensemble
from benchmarks.fairness_lottery import select_adult_eo_lottery
from benchmarks.fairness_selection import (
    ADULT_EO_BASELINE,
    ADULT_EO_SEEDS,
    ADULT_EO_SPLIT_SEEDS,
    at_least,
    select_adult_eo,
    select_dataset,
)
from regtune.trainables.catalog import BUILTINS
from regtune.trainables.config import DatasetConfig
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.loop import train

NAME = "fairness_splits"
SELECTION_NAME = f"{NAME}_selection"
#: The ``--measure-floor`` record's name (:mod:`benchmarks.fairness_floor`).
FLOOR_NAME = f"{NAME}_floor"
#: The Adult EO robust-threshold selection's name in its record's file name
#: (``--select-adult-eo``; :func:`_selection_path`).
ADULT_EO = "adult_eo"
#: The Adult EO assessments run on validation only after the robust one: name
#: (flag ``--select-adult-eo-<name>``, record ``..._adult_eo_<name>.json``) ->
#: (the function that runs it, what it compared in the report's words).
ASSESSMENTS: dict[str, tuple[Callable[..., dict[str, Any]], str]] = {
    "crossfit": (select_adult_eo_crossfit, "thresholds fitted on out-of-fold training scores"),
    "base": (
        select_adult_eo_base,
        "thresholds on an unconstrained model (method: postprocess) and a tighter tolerance",
    ),
    "ensemble": (
        select_adult_eo_ensemble,
        "a seed ensemble of the current model, thresholds refitted on its mean probabilities",
    ),
    "lottery": (
        select_adult_eo_lottery,
        "randomized thresholds (a per-group lottery) at tolerances 0.01, 0.005 and 0",
    ),
}
DEFAULT_DATASETS = ("adult", "german", "compas")
#: ``--smoke-test`` default: one dataset of each config source (COMPAS runs
#: the same code as German), to stay near 20 s.
SMOKE_DATASETS = ("adult", "german")
#: Datasets whose regtune settings come from :mod:`benchmarks.fairness_selection`.
SELECTED_DATASETS = ("german", "compas")
DEFAULT_SPLIT_SEEDS = (0, 1, 2)
#: Re-check rounds (``--fresh [ROUND]``), in the order they ran: name (the
#: suffix of the round's selection, run and report files) -> its split seeds,
#: which no run of any kind had used before that round.
ROUNDS: dict[str, tuple[int, ...]] = {
    "fresh": (3, 4, 5),
    "fresh2": (6, 7, 8),
    "fresh3": (9, 10, 11),
    "fresh4": (12, 13, 14),
    "fresh5": (15, 16, 17),
    "fresh6": (18, 19, 20),
}
#: ``--fresh`` without a name: the first round.
FRESH = "fresh"
FRESH_SPLIT_SEEDS = ROUNDS[FRESH]
DEFAULT_SEEDS = (0, 1, 2)
#: torch intra-op threads per run.
TORCH_THREADS = 1
#: Smoke test: one split, one seed, one epoch, fairlearn on few rows / iterations.
SMOKE_EPOCHS = 1
#: Central coverage of the interval over runs.
CI_LEVEL = 0.95
DP, EO = "regtune DP", "regtune EO"
#: Adult EO with randomized thresholds, chosen on validation only
#: (``--select-adult-eo-lottery``, :mod:`benchmarks.fairness_lottery`) and run
#: beside :data:`EO` from round ``fresh6`` on.
EO_LOTTERY = "regtune EO lottery"

_MLP = {"arch": "mlp", "width": 128, "depth": 2, "dropout": 0.1}
_TRAINING = {
    "epochs": 30,
    "batch_size": 512,
    "lr": 1e-3,
    "optimizer": "adamw",
    "lr_schedule": "cosine",
    "robust_every": 0,
}

#: Adult's regtune contenders: name -> (gap kind, config). DP: chosen on
#: Adult's validation split in earlier work (benchmarks/trainables_fairness.py's
#: SELECTION). EO: that config with ``margin`` 0.01 (was 0.005) and its
#: thresholds fitted on the training and validation rows
#: (:data:`THRESHOLD_ROWS`), chosen on validation numbers only (see
#: docs/fairness_benchmark.md, "How the Adult EO method was chosen").
ADULT_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    DP: (
        "dp",
        {
            "model": _MLP,
            "training": {
                **_TRAINING,
                "batch_size": 2048,
                "lr": 3e-3,
                "calibration": "temperature",
            },
            "penalties": {"fairness": {"kind": "dp", "strength": 3.0}},
        },
    ),
    EO: (
        "eo",
        {
            "model": _MLP,
            "training": {**_TRAINING, "calibration": "group_temperature"},
            "penalties": {
                "fairness": {
                    "kind": "eo",
                    "method": "lagrangian+postprocess",
                    "strength": 10.0,
                    "dual_lr": 1.0,
                    "bound": 0.02,
                    "margin": 0.01,
                }
            },
        },
    ),
}
_EO_FAIRNESS = ADULT_CONFIGS[EO][1]["penalties"]["fairness"]
ADULT_CONFIGS[EO_LOTTERY] = (
    "eo",
    {
        **ADULT_CONFIGS[EO][1],
        # Tolerance bound - margin = 1e-4: the assessment's 0 (margin 0.02) is refused
        # (margin must be below bound); on its halvings 1e-4 measured acc 0.8412,
        # eo_diff 0.0444 and worst of a split's seeds 0.0677 against 0.8412, 0.0448, 0.0685.
        "penalties": {"fairness": {**_EO_FAIRNESS, "margin": 0.0199, "randomized": True}},
    },
)
#: Rows each Adult contender's post-processing thresholds are fitted on
#: (``train(..., threshold_rows=...)``); absent: the validation split.
THRESHOLD_ROWS: dict[str, str] = {EO: "train+val", EO_LOTTERY: "train+val"}
#: Adult goals of issue 9: (method, description, check over the method's summary).
Check = Callable[[dict[str, Any]], tuple[bool, str]]


#: (dataset, split seed, gap kind) choices of the German/COMPAS selection
#: that changed when it was rerun with the exact two-group threshold fit
#: (2026-12-03, split seeds 0-5; ``git log`` of the selection JSONs).
RESELECTED = 10
#: What the regtune rows of 2026-12-03 are (both sections of the report).
EXACT_FIT_RERUN = (
    'The regtune DP and EO rows were rerun on 2026-12-03 (`--only "regtune DP" '
    '"regtune EO"`, and with `--fresh`) after the threshold fit became exact for two '
    "groups (the most accurate pair within the tolerance; before, the other group took "
    "its closest-rate threshold; docs/fairness.md). That change came from a code review "
    "of the fit against its documented promise, not from any test number; no Adult "
    "setting was changed. With the previous fit the same command reproduced every "
    "earlier Adult regtune row exactly (all 18 runs of split seeds 0-2), so the Adult "
    "rows differ only where the fit does. The German/COMPAS settings of split seeds "
    "0-5 were then chosen again with the exact fit by the unchanged nested selection "
    "(candidates, targets and rule as before; training and validation rows only; "
    f"{RESELECTED} of 24 choices changed), and their regtune rows were rerun after the "
    "new choices had been committed. Test rows of these split seeds had been read "
    "before (with the earlier fit); the selection is mechanical, and no test number "
    "set any of its inputs."
)
#: The second re-check round's own words (the report's ``fresh2`` section).
FRESH2_NOTE = (
    "This round was added on 2026-12-03, after the rows of split seeds 0-5 had been "
    "read, to check the worst cases once more on split seeds no run had used; its "
    "methods, German/COMPAS selection code, candidates, targets and rules were "
    "committed before any of its runs, with the exact two-group threshold fit from "
    "the start (docs/fairness.md)."
)
#: The fourth German/COMPAS selection (every section of the report).
POOLED_NOTE = (
    " German/COMPAS, fourth selection (2026-12-03, `--select-pooled`, "
    "`benchmarks/fairness_pooled.py`): the candidates now include randomized "
    "thresholds (`penalties.fairness.randomized`, "
    "a lottery of thresholds per group at tolerance 0; docs/fairness.md), and the "
    "setting of every split seed is one per dataset and gap kind, chosen on the "
    "hold-out numbers of split seeds 0-8 pooled (validation rows only; rule and "
    "protocol in the module, committed before its runs; the nested selection's own "
    "choices stay in the records as `nested_chosen`). It was written after the test "
    "rows of split seeds 0-8 had been read (the nested choices matched fairlearn in 0 of "
    "8 comparisons over them); an exploration on hold-out parts (validation rows) set "
    "its candidates, no test number set any of its inputs, and the regtune rows of split "
    "seeds 0-8 were rerun after its choice had been committed. Split seeds 9-11 check "
    "the choice on rows no run had used."
)
#: The third re-check round's own words (the report's ``fresh3`` section).
FRESH3_NOTE = (
    "This round was added on 2026-12-03, after the rows of split seeds 0-8 had been "
    "read, to check the fourth German/COMPAS selection on split seeds no run had used: "
    "its nested selection ran first (hold-out numbers of every candidate, training and "
    "validation rows only), then the pooled choice of split seeds 0-8 was written into "
    "its records (`--apply-pooled fresh3`, each split "
    "seed's own target where the setting has one), all before any of its test rows ran."
)
#: The fourth re-check round's own words (the report's ``fresh4`` section).
FRESH4_NOTE = (
    "This round was added on 2026-12-03 (stop 30), after the rows of split seeds 0-11 "
    "had been read, to check every method once more on split seeds no run had used, "
    "nothing changed: the fourth German/COMPAS selection's choices (COMPAS EO's lottery "
    "had met the goal on one new round, 9-11) and Adult's configs. Its nested selection "
    "ran first (training and validation rows only), then the pooled choice of split "
    "seeds 0-8 was written into its records (`--apply-pooled fresh4`), all committed "
    "before any of its test rows ran. Intervals are over split seeds (stop 30)."
)
#: The fifth re-check round's own words (the report's ``fresh5`` section).
FRESH5_NOTE = (
    "This round was added on 2026-12-03 (stop 30), after the rows of split seeds 0-14 "
    "had been read, to check the fifth German/COMPAS selection (`--select-repooled`, "
    "`benchmarks/fairness_repooled.py`: the fourth's candidates and rule over the stored "
    "hold-out numbers of split seeds 0-14, validation rows only) on split seeds no run "
    "had used. Its nested selection ran first (training and validation rows only), then "
    "the fifth selection's choice was written into its records (`--apply-pooled fresh5`), "
    "all committed before any of its test rows ran; Adult's configs are unchanged. "
    "Intervals are over split seeds (stop 30). The table over every split seed pools "
    "each method's rows as run: COMPAS DP is penalty 1 on split seeds 0-14 and the MLP "
    "lottery on 15-17, every other setting the same throughout."
)
FRESH6_NOTE = (
    "This round was added on 2026-12-03 (stop 31), after the rows of split seeds 0-17 "
    "had been read, to check Adult EO's lottery (`regtune EO lottery`: the current EO "
    "config with `randomized: true`, chosen at margin 0.02 on validation only by "
    "`--select-adult-eo-lottery`, `benchmarks/fairness_lottery.py`, and run at margin "
    "0.0199, since a margin must be below the bound) beside the current "
    "method (`regtune EO`), on split seeds no run had used. German/COMPAS keep the fifth "
    "selection's settings: the nested selection ran first (training and validation rows "
    "only), then that choice was written into its records (`--apply-pooled fresh6`), "
    "all committed before any of its test rows ran. The table over every split seed "
    "pools each method's rows as run (COMPAS DP: penalty 1 on split seeds 0-14, the MLP "
    "lottery from 15 on). Decided while this round's test rows were running, before any "
    "was read: `regtune EO lottery` also runs on split seeds 0-17 (`--only`, the other "
    "methods' rows kept as measured; Adult's test split is `adult.test` in every round), "
    "so that it is compared with the current method over all 63 runs, whatever this "
    "round shows."
)
#: Per re-check round (:data:`ROUNDS`): what its rows are, beyond the shared protocol.
ROUND_NOTES: dict[str, str] = {
    FRESH: EXACT_FIT_RERUN + POOLED_NOTE,
    "fresh2": FRESH2_NOTE + POOLED_NOTE,
    "fresh3": FRESH3_NOTE + POOLED_NOTE,
    "fresh4": FRESH4_NOTE + POOLED_NOTE,
    "fresh5": FRESH5_NOTE,
    "fresh6": FRESH6_NOTE,
}


def _at_most(value: float, bound: float) -> tuple[bool, str]:
    return value <= bound, f"{value:.4f}"


def _at_least(value: float, bound: float) -> tuple[bool, str]:
    return value >= bound, f"{value:.4f}"


def _every_split(summ: dict[str, Any], key: str, ok: Callable[[float], bool]) -> tuple[bool, str]:
    values = summ["per_split"][key]
    return all(ok(v) for v in values.values()), " / ".join(f"{v:.4f}" for v in values.values())


ADULT_GOALS: list[tuple[str, str, Check]] = [
    *(
        goal
        for method in (EO, EO_LOTTERY)
        for goal in (
            (method, "mean eo_diff <= 0.02", lambda m: _at_most(m["gap"]["mean"], 0.02)),
            (method, "worst eo_diff <= 0.03", lambda m: _at_most(m["gap"]["worst"], 0.03)),
            (method, "mean acc >= 0.84", lambda m: _at_least(m["acc"]["mean"], 0.84)),
            (method, "ECE <= 0.03 (worst run)", lambda m: _at_most(m["ece"]["worst"], 0.03)),
        )
    ),
    (DP, "mean dp_diff <= 0.02", lambda m: _at_most(m["gap"]["mean"], 0.02)),
    (
        DP,
        "every split: dp_diff <= 0.02 (split mean)",
        lambda m: _every_split(m, "gap", lambda v: v <= 0.02),
    ),
    (
        DP,
        "every split: acc >= 0.835 (split mean)",
        lambda m: _every_split(m, "acc", lambda v: v >= 0.835),
    ),
    (
        DP,
        "every split: ECE <= 0.02 (split mean)",
        lambda m: _every_split(m, "ece", lambda v: v <= 0.02),
    ),
]
METRICS = ("acc", "gap", "ece")


def _selection_path(name: str, smoke: bool, folder: Path, fresh: str | None = None) -> Path:
    tag = f"_{fresh}" if fresh else ""
    return folder / f"{SELECTION_NAME}_{name}{tag}{'-smoke' if smoke else ''}.json"


def load_selected(smoke: bool, fresh: str | None = None) -> dict[str, Any]:
    """The selection records of German and COMPAS (``{"datasets": {name: record}}``):
    a smoke ``--select``'s own (in the results folder) during a smoke test
    when there is one, else the committed
    ``benchmarks/results/fairness_splits_selection_<name>.json`` (with
    ``fresh``: ``..._<name>_<fresh>.json``, that re-check round's split seeds')."""
    out: dict[str, Any] = {"datasets": {}}
    for name in SELECTED_DATASETS:
        smoke_path = _selection_path(name, True, results_dir(), fresh)
        path = (
            smoke_path
            if smoke and smoke_path.is_file()
            else _selection_path(name, False, RESULTS_DIR, fresh)
        )
        if path.is_file():  # else German/COMPAS say to run --select (configs_for)
            out["datasets"][name] = json.loads(path.read_text())
    return out


def configs_for(
    name: str, selection: dict[str, Any], split_seed: int
) -> dict[str, tuple[str, dict[str, Any]]]:
    """The regtune contenders of one dataset and split seed: name -> (gap kind, config)."""
    if name not in SELECTED_DATASETS:
        return ADULT_CONFIGS
    try:
        kinds = selection["datasets"][name]["splits"][str(split_seed)]["kinds"]
    except KeyError:
        raise SystemExit(
            f"no selected settings for {name!r} split seed {split_seed}: run "
            f"`python -m benchmarks.{NAME} --select --datasets {name} --split-seeds ...`"
        ) from None
    return {DP: ("dp", kinds["dp"]["config"]), EO: ("eo", kinds["eo"]["config"])}


def threshold_rows_for(name: str, method: str) -> str | None:
    """The ``threshold_rows`` override of an Adult contender; None elsewhere
    (German/COMPAS configs name their own ``penalties.fairness.threshold_rows``)."""
    return THRESHOLD_ROWS.get(method, "val") if name == "adult" else None


def _regtune_run(
    cfg: dict[str, Any],
    kind: str,
    ds: Dataset,
    split_seed: int,
    seed: int,
    *,
    smoke: bool,
    threshold_rows: str | None = None,
) -> dict[str, float]:
    cfg = seeded_config(cfg, ds.name, split_seed, seed, SMOKE_EPOCHS if smoke else None)
    result = train(cfg, dataset=ds, threshold_rows=threshold_rows)
    t = result.test_metrics
    key = "dp_diff" if kind == "dp" else "eo_diff"
    return {
        "acc": t["test_acc"],
        "gap": t[f"test_{key}"],
        "gap_ci_low": t[f"test_{key}_ci_low"],
        "gap_ci_high": t[f"test_{key}_ci_high"],
        "ece": t["test_ece"],
        "fit_s": result.elapsed_s,
        "kept_epoch": float(result.best_epoch),
        "postprocess_feasible": t.get("postprocess_feasible", 1.0),
    }


def smallest_cells(ds: Dataset) -> dict[str, Any]:
    """Rows of the smallest (group, label) cell of each split, and which cell."""
    out: dict[str, Any] = {}
    for split_name in ("train", "val", "test"):
        split = getattr(ds, split_name)
        assert split.s is not None
        counts = {
            (g, label): int(((split.s == g) & (split.y == label)).sum())
            for g in range(len(ds.group_names))
            for label in (0, 1)
        }
        (g, label), n = min(counts.items(), key=lambda kv: kv[1])
        out[split_name] = n
        out[f"{split_name}_cell"] = f"{ds.group_names[g]}, {ds.schema.classes[label]}"
    return out


def _summary(runs: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Mean, worst run and a :data:`CI_LEVEL` t-interval of each metric. The
    mean and its interval are over the split seeds' means (runs of one split
    seed share its test rows, and fairlearn's fitted model, so they are not
    independent; a split seed with more runs, as in a round stopped early,
    does not weigh more); with as many runs per split seed, the mean is the
    runs' mean."""
    out: dict[str, Any] = {"runs": len(runs)}
    splits = sorted({int(r["split_seed"]) for r in runs})
    per_split = {
        key: {
            str(k): statistics.fmean(r[key] for r in runs if r["split_seed"] == k) for k in splits
        }
        for key in (*METRICS, "fit_s")
    }
    for key, means in per_split.items():
        values = [r[key] for r in runs]
        mean, low, high = mean_interval(list(means.values()), CI_LEVEL)
        worst = min(values) if key == "acc" else max(values)
        out[key] = {"mean": mean, "worst": worst, "ci": [low, high]}
    out["per_split"] = {key: per_split[key] for key in METRICS}
    if all("gap_ci_low" in r for r in runs):
        out["gap_bootstrap_ci_mean"] = [
            statistics.fmean(r["gap_ci_low"] for r in runs),
            statistics.fmean(r["gap_ci_high"] for r in runs),
        ]
    return out


def paired_difference(
    mine: Sequence[dict[str, float]], theirs: Sequence[dict[str, float]], key: str
) -> dict[str, Any]:
    """Mean of ``mine - theirs`` in ``key`` over the runs both have (same split
    seed and seed), with a :data:`CI_LEVEL` t-interval over the split seeds'
    mean differences (:func:`benchmarks.fairness_chance.split_differences`):
    runs of one split seed share its test rows, so the split seed, not the
    run, is the independent unit. An interval that holds 0 says the runs
    cannot tell the two apart.

    Raises:
        ValueError: the two share no (split seed, seed).
    """
    per_split = split_differences(mine, theirs, (key,))[:, 0].tolist()
    mean, low, high = mean_interval(per_split, CI_LEVEL)
    theirs_runs = {(t["split_seed"], t["seed"]) for t in theirs}
    runs = sum((r["split_seed"], r["seed"]) in theirs_runs for r in mine)
    return {"mean": mean, "ci": [low, high], "runs": runs, "split_seeds": len(per_split)}


def _paired_text(diff: dict[str, Any]) -> str:
    return f"{diff['mean']:+.4f} [{diff['ci'][0]:+.4f}, {diff['ci'][1]:+.4f}]"


def goals(
    summaries: dict[str, dict[str, dict[str, Any]]],
    runs: dict[str, dict[str, list[dict[str, float]]]] | None = None,
) -> list[dict[str, Any]]:
    """Issue 9's goals, each with the measured value and pass/fail.

    Adult: :data:`ADULT_GOALS`. German and COMPAS: regtune's DP (EO) method
    against each fairlearn contender of the same gap: its mean accuracy at
    least the contender's while its mean gap is at most the contender's.
    With ``runs`` (dataset -> method -> runs), German/COMPAS rows also carry
    ``paired``: :func:`paired_difference` of accuracy and gap (regtune minus
    fairlearn), which says whether a miss is larger than the runs' noise,
    and ``chance_pass_rate`` (:func:`benchmarks.fairness_chance.chance_pass_rate`):
    how often the goal passes when the two methods are equal.
    """
    out: list[dict[str, Any]] = []
    adult = summaries.get("adult", {})
    for method, text, check in ADULT_GOALS:
        if method in adult:
            ok, measured = check(adult[method])
            out.append(
                {"dataset": "adult", "method": method, "goal": text, "measured": measured, "ok": ok}
            )
    for name in SELECTED_DATASETS:
        by_method = summaries.get(name, {})
        for method, kind in ((DP, "dp"), (EO, "eo")):
            if method not in by_method:
                continue
            mine = by_method[method]
            for peer, (peer_kind, _, _) in FAIRLEARN.items():
                if peer_kind != kind or peer not in by_method:
                    continue
                theirs = by_method[peer]
                # Equal means up to float rounding count as equal (at_least).
                acc_ok = at_least(mine["acc"]["mean"], theirs["acc"]["mean"])
                gap_ok = at_least(theirs["gap"]["mean"], mine["gap"]["mean"])
                paired: dict[str, Any] = {}
                if runs is not None and name in runs:
                    mine_runs, their_runs = runs[name][method], runs[name][peer]
                    paired = {
                        key: paired_difference(mine_runs, their_runs, key) for key in ("acc", "gap")
                    }
                    paired["chance_pass_rate"] = chance_pass_rate(mine_runs, their_runs)
                out.append(
                    {
                        "paired": paired,
                        "dataset": name,
                        "method": method,
                        "goal": f"acc >= {peer}'s at gap <= its gap (means)",
                        "measured": (
                            f"acc {mine['acc']['mean']:.4f} vs {theirs['acc']['mean']:.4f}, "
                            f"gap {mine['gap']['mean']:.4f} vs {theirs['gap']['mean']:.4f}"
                        ),
                        "ok": acc_ok and gap_ok,
                    }
                )
    return out


def _fmt(stat: dict[str, Any]) -> str:
    return f"{stat['mean']:.4f} [{stat['ci'][0]:.4f}, {stat['ci'][1]:.4f}] / {stat['worst']:.4f}"


def _setting(name: str, selection: dict[str, Any], method: str) -> str:
    if method.startswith("fairlearn"):
        return "LogisticRegression inside; fitted per split"
    entry = selection.get("datasets", {}).get(name)
    if name in SELECTED_DATASETS:
        if entry is None:
            return "see configs in the JSON"
        kind = "dp" if method == DP else "eo"
        chosen = [
            f"{k}: {split['kinds'][kind]['chosen']}"
            + ("" if "logreg" in split["kinds"][kind]["chosen"] else " (mlp 64x2)")
            for k, split in entry["splits"].items()
        ]
        return "per split seed, " + "; ".join(chosen)
    fair = ADULT_CONFIGS[method][1]["penalties"]["fairness"]
    text = ", ".join(f"{k} {v}" for k, v in fair.items() if k != "kind")
    rows = THRESHOLD_ROWS.get(method)
    return f"{text}, thresholds fitted on {rows}" if rows else text


def _results_table(
    summaries: dict[str, dict[str, dict[str, Any]]], selection: dict[str, Any]
) -> str:
    """Mean [interval] / worst of accuracy, gap and ECE per dataset and method."""
    headers = [
        "dataset",
        "method",
        "setting",
        "acc mean [95% CI] / worst",
        "gap mean [95% CI] / worst",
        "ECE mean [95% CI] / worst",
        "test gap bootstrap CI (mean)",
    ]
    rows = []
    for name, by_method in summaries.items():
        for method, summ in by_method.items():
            boot = summ.get("gap_bootstrap_ci_mean")
            rows.append(
                [
                    name,
                    method,
                    _setting(name, selection, method),
                    _fmt(summ["acc"]),
                    _fmt(summ["gap"]),
                    _fmt(summ["ece"]),
                    f"[{boot[0]:.4f}, {boot[1]:.4f}]" if boot else "-",
                ]
            )
    return markdown_table(headers, rows)


def _goal_table(goal_rows: list[dict[str, Any]]) -> str:
    """The goals of :func:`goals` with their paired differences."""
    return markdown_table(
        [
            "dataset",
            "method",
            "goal",
            "measured",
            "pass",
            "paired acc diff [95% CI]",
            "paired gap diff [95% CI]",
            "passes by chance",
        ],
        [
            [
                g["dataset"],
                g["method"],
                g["goal"],
                g["measured"],
                "pass" if g["ok"] else "FAIL",
                _paired_text(g["paired"]["acc"]) if g.get("paired") else "-",
                _paired_text(g["paired"]["gap"]) if g.get("paired") else "-",
                _chance_text(g.get("paired", {})),
            ]
            for g in goal_rows
        ],
    )


#: What the goal tables' "passes by chance" column is (the reports' words).
CHANCE_NOTE = (
    '"Passes by chance": how often the goal would pass if the two methods were '
    "equal: the fraction of sign flips of the split seeds' mean (accuracy, gap) "
    "differences under which it passes (every pattern counted up to "
    f"{EXACT_SPLITS} split seeds, {CHANCE_DRAWS:,} seeded random ones beyond; "
    "`benchmarks/fairness_chance.py`; about 0.25 when the two differences are "
    "uncorrelated), so that a pass or a miss is read beside the paired intervals, "
    "not alone."
)


def _chance_text(paired: dict[str, Any]) -> str:
    rate = paired.get("chance_pass_rate")
    return "-" if rate is None else f"{rate:.2f}"


def _cell_table(cells: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The smallest (group, label) cell's rows per dataset, fewest over split seeds."""
    rows = []
    for name, by_split in cells.items():
        lows = {p: min(c[p] for c in by_split.values()) for p in ("train", "val", "test")}
        which = sorted({c["test_cell"] for c in by_split.values()})
        rows.append([name, "; ".join(which), lows["train"], lows["val"], lows["test"]])
    return markdown_table(
        ["dataset", "smallest test cell (group, label)", "train", "val", "test"], rows
    )


def _chosen_table(selection: dict[str, Any], summaries: dict[str, Any]) -> str:
    """The German/COMPAS setting chosen per split seed and gap, with its
    hold-out numbers and the rule's reason (datasets in ``summaries`` only)."""
    chosen = []
    for name, entry in selection.get("datasets", {}).items():
        if name not in summaries:
            continue
        for split_seed, split in entry["splits"].items():
            for kind, k in split["kinds"].items():
                mine = k["candidates"][k["chosen"]]
                chosen.append(
                    [
                        name,
                        split_seed,
                        kind,
                        f"{k['chosen']} ({mine['base']})",
                        f"{k['target_gap']:.4f}",
                        f"{mine['mean']['acc']:.4f}",
                        f"{mine['mean']['gap']:.4f}",
                        k["why"],
                    ]
                )
    return markdown_table(
        [
            "dataset",
            "split seed",
            "gap",
            "chosen (base)",
            "target hold-out gap",
            "hold-out acc",
            "hold-out gap",
            "why",
        ],
        chosen,
    )


def markdown(
    summaries: dict[str, dict[str, dict[str, Any]]],
    goal_rows: list[dict[str, Any]],
    cells: dict[str, dict[str, dict[str, Any]]],
    selection: dict[str, Any],
    ran: dict[str, dict[str, Any]],
    *,
    smoke: bool,
    adult_eo: dict[str, Any] | None = None,
) -> str:
    """The markdown report: results, goals, smallest cells, how settings were
    chosen; with ``adult_eo`` (the ``--select-adult-eo`` record), what the
    robust-threshold selection found (:func:`robust_text`)."""
    results_table = _results_table(summaries, selection)
    goal_table = _goal_table(goal_rows)
    cell_table = _cell_table(cells)
    chosen_table = _chosen_table(selection, summaries)
    how = {
        name: f"{e['splits'][next(iter(e['splits']))]['repeats']} hold-out repeats x "
        f"seeds {e['splits'][next(iter(e['splits']))]['seeds']}"
        for name, e in selection.get("datasets", {}).items()
        if e.get("splits")
    }
    what_ran = "; ".join(
        f"{n}: split seeds {r['split_seeds']} x training seeds {r['seeds']}"
        f"{'' if r['complete'] else ' (INCOMPLETE: stopped early)'}"
        + (
            f" (rows of {', '.join(r['kept_from_earlier_run'])} kept from the earlier run "
            "of the same splits and seeds)"
            if r.get("kept_from_earlier_run")
            else ""
        )
        for n, r in ran.items()
    )
    return (
        f"Ran {what_ran}{' — SMOKE TEST' if smoke else ''}; the gap is dp_diff for DP "
        "rows, eo_diff for EO rows; intervals are 95% t-intervals over the split seeds' "
        "means (with one split seed, the mean itself). "
        "fairlearn is fitted once per split (deterministic); the seed draws its "
        "randomised decisions. German/COMPAS settings were chosen per split seed on "
        "that split's training and validation rows only (`benchmarks/fairness_selection.py`, "
        "nested: hold-out parts re-split from them, "
        + "; ".join(f"{n}: {h}" for n, h in how.items())
        + "); the test rows are never loaded into a selection run. Adult DP's settings "
        "are unchanged from earlier work (chosen on Adult's validation split). Adult EO "
        "(thresholds fitted on the training and validation rows, margin 0.01) was chosen "
        "on validation numbers of 6 training runs (split seeds 0-2 x training seeds 0-1; "
        "docs/fairness_benchmark.md) before its test rows here were run; no test number "
        "was read to choose it. Test numbers of Adult had been seen before (earlier runs of this "
        "benchmark with the previous EO method, 0.029 mean / 0.076 worst eo_diff; issue "
        "9's check): they showed that the previous method missed, and set no value here. "
        "German/COMPAS: this is the second selection. The first (one setting per dataset, "
        "chosen on the validation splits of split seeds 0 and 1, "
        "`fairness_splits_selection.json`) had its test rows run and read (1 of 8 "
        "comparisons met); the nested selection was written after that, no test number "
        "set any of its values, and its choices were fixed before these test rows ran. "
        f"{EXACT_FIT_RERUN}{POOLED_NOTE}"
        f"{robust_text(adult_eo)}"
        + "".join(
            assessment_text(n, load_adult_eo_selection(smoke, f"{ADULT_EO}_{n}"))
            for n in ASSESSMENTS
        )
        + "\n\n"
        f"{results_table}\n\n"
        "Goals (issue 9). Paired differences: regtune minus fairlearn over the runs of "
        "the same split seed and seed, with a 95% t-interval over the split seeds' mean "
        "differences (runs of one split seed share its test rows; an interval "
        f"holding 0 cannot tell the two apart). {CHANCE_NOTE}\n\n{goal_table}\n\n"
        "Settings chosen per split seed on its training and validation rows (German, "
        "COMPAS; mean over hold-out repeats and seeds):\n\n"
        f"{chosen_table}\n\n"
        "Smallest (group, label) cell, rows, fewest over the split seeds run:\n\n"
        f"{cell_table}\n"
    )


def assessment_text(name: str, record: dict[str, Any] | None) -> str:
    """What the Adult EO assessment ``name`` found, held-out numbers of each
    candidate against the current method's ("" without a complete record)."""
    if not record or not record.get("complete"):
        return ""
    summ = record["summary"]
    base = summ[ADULT_EO_BASELINE]
    kept = record["chosen"] == ADULT_EO_BASELINE
    parts = "; ".join(
        f"{n}: held-out |FPR gap| {m['abs_fpr_gap_mean']:.4f} at fitted gap "
        f"{m['fit_gap_mean']:.4f}, eo_diff {m['eo_diff_mean']:.4f} mean / "
        f"{m['eo_diff_p90']:.4f} p90{_worst_text(m)}, acc {m['acc_mean']:.4f}"
        for n, m in summ.items()
        if n != ADULT_EO_BASELINE
    )
    function, what = ASSESSMENTS[name]
    module = function.__module__.replace(".", "/")
    return (
        f" Adult EO, {what} "
        f"(`fairness_splits_selection_adult_eo_{name}.json`, {module}.py): "
        f"assessed on validation only, {len(record['runs'])} training runs (split seeds "
        f"{record['split_seeds']} x seeds {record['seeds']}), by a rule fixed "
        f"before its runs ({record['rule']}); "
        + ("the current method is kept" if kept else f"it chose {record['chosen']!r}")
        + f". Held-out: current method |FPR gap| {base['abs_fpr_gap_mean']:.4f} at fitted "
        f"gap {base['fit_gap_mean']:.4f}, eo_diff {base['eo_diff_mean']:.4f} mean / "
        f"{base['eo_diff_p90']:.4f} p90{_worst_text(base)}, acc {base['acc_mean']:.4f}; "
        f"{parts}."
    )


def _worst_text(summary: dict[str, Any]) -> str:
    """The seed-ensemble assessment's extra measures ("" for the others'):
    the worst of a split's runs on the same held-out half, and held-out ECE."""
    if "worst_of_seeds_mean" not in summary:
        return ""
    return (
        f", worst of a split's seeds {summary['worst_of_seeds_mean']:.4f} mean, "
        f"ECE {summary['ece_mean']:.4f}"
    )


def robust_text(record: dict[str, Any] | None) -> str:
    """What the Adult EO robust-threshold selection chose, and what it looked
    at ("" without a record)."""
    if not record or not record.get("complete"):
        return ""
    summ = record["summary"]
    robust = {n: m for n, m in summ.items() if record["candidates"][n]["robust_quantile"]}
    best = max(robust, key=lambda n: robust[n]["acc_mean"])
    kept = record["chosen"] == ADULT_EO_BASELINE
    base = summ[ADULT_EO_BASELINE]
    outcome = (
        "no robust setting met its rule, so Adult EO's method is unchanged"
        if kept
        else f"it chose {record['chosen']!r}"
    )
    return (
        " Adult EO, robust thresholds (`robust_quantile`: the gap must hold on that share "
        "of bootstrap resamples of the fitting rows; docs/fairness.md): assessed on "
        f"validation only ({len(record['candidates']) - 1} robust settings"
        + (
            f", of which {', '.join(later)} added after the others had been scored"
            if (later := record.get("added_after_the_others_were_scored"))
            else ""
        )
        + f"; {len(record['runs'])} training runs, split seeds "
        f"{record['split_seeds']} x seeds {record['seeds']}, {record['halvings']} halvings "
        "of each validation split, `fairness_splits_selection_adult_eo.json`); by its "
        f"rule, fixed before its runs ({record['rule']}), {outcome}. Held-out: current "
        f"method eo_diff {base['eo_diff_mean']:.4f} mean / {base['eo_diff_p90']:.4f} p90 at "
        f"acc {base['acc_mean']:.4f}; the most accurate robust setting ({best}) "
        f"{robust[best]['eo_diff_mean']:.4f} / {robust[best]['eo_diff_p90']:.4f} at "
        f"{robust[best]['acc_mean']:.4f}. The previous method's test numbers had been seen "
        "before the robust method was designed (docs/fairness_benchmark.md); no test "
        "number set any value of it."
    )


def load_adult_eo_selection(smoke: bool, stem: str = ADULT_EO) -> dict[str, Any] | None:
    """The ``--select-adult-eo`` record (``stem`` ``adult_eo_<name>``: that of the
    assessment ``name``, :data:`ASSESSMENTS`): a smoke run's own during a smoke
    test when there is one, else the committed one; None when absent."""
    smoke_path = _selection_path(stem, True, results_dir())
    committed = _selection_path(stem, False, RESULTS_DIR)
    path = smoke_path if smoke and smoke_path.is_file() else committed
    return json.loads(path.read_text()) if path.is_file() else None


def _floor_path(smoke: bool, folder: Path, name: str = "adult") -> Path:
    """Adult's floor record is ``fairness_splits_floor.json``; German's and
    COMPAS's carry the dataset's name."""
    tag = "" if name == "adult" else f"_{name}"
    return folder / f"{FLOOR_NAME}{tag}{'-smoke' if smoke else ''}.json"


def load_floor(smoke: bool, name: str = "adult") -> dict[str, Any] | None:
    """A ``--measure-floor`` record: a smoke run's own during a smoke test
    when there is one, else the committed one; None when absent."""
    smoke_path = _floor_path(True, results_dir(), name)
    path = smoke_path if smoke and smoke_path.is_file() else _floor_path(False, RESULTS_DIR, name)
    return json.loads(path.read_text()) if path.is_file() else None


def _floor_summary(floor: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where the floor record is and what it covered (None without one)."""
    if floor is None:
        return None
    out: dict[str, Any] = {"file": f"benchmarks/results/{FLOOR_NAME}.json"}
    out.update({k: floor[k] for k in ("split_seeds", "seeds", "reproduced") if k in floor})
    return out


def round_of(split_seed: int) -> str | None:
    """The re-check round whose split seeds hold ``split_seed``; None for the
    issue's (and any other) split seeds."""
    return next((r for r, seeds in ROUNDS.items() if split_seed in seeds), None)


def _stored_runs(name: str, split_seeds: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """Every method's stored rows of ``split_seeds``, from the run file of each
    split seed's round (the issue's split seeds' file for the others): the
    results folder's own when it has one, else the committed one (as
    :func:`load_selected` reads selections)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for fresh in dict.fromkeys(round_of(k) for k in split_seeds):
        own = _raw_path(name, False, fresh)
        path = own if own.is_file() else RESULTS_DIR / own.name
        if not path.is_file():
            continue
        for m, rows in json.loads(path.read_text())["runs"].items():
            out.setdefault(m, []).extend(r for r in rows if r["split_seed"] in split_seeds)
    return out


def _measure_floor(
    smoke: bool, started: float, datasets: Sequence[str], split_seeds: Sequence[int] | None
) -> int:
    """``--measure-floor``: :func:`benchmarks.fairness_floor.measure_floor` on
    Adult's EO methods, :func:`~benchmarks.fairness_floor.measure_selected_floor`
    on German's and COMPAS's (on ``split_seeds``, default the issue's; each
    split seed with its round's selected settings), each checked against the
    stored rows (none in a smoke test); writes one record per dataset."""
    if smoke:
        split_seeds = DEFAULT_SPLIT_SEEDS[:1]
    chosen = list(split_seeds or DEFAULT_SPLIT_SEEDS)
    kwargs = {"split_seeds": DEFAULT_SPLIT_SEEDS[:1], "seeds": DEFAULT_SEEDS[:1]} if smoke else {}
    selected = set(datasets) & set(SELECTED_DATASETS)  # Adult's configs are fixed
    rounds = {round_of(k) for k in chosen} if selected else set()
    selections = {r: load_selected(smoke, fresh=r) for r in rounds}
    for name in datasets:
        path = _floor_path(smoke, results_dir(), name)
        path.parent.mkdir(parents=True, exist_ok=True)
        stored = (
            {} if smoke else _stored_runs(name, DEFAULT_SPLIT_SEEDS if name == "adult" else chosen)
        )
        begun = time.perf_counter()

        def write(record: dict[str, Any], path: Path = path, begun: float = begun) -> None:
            record["machine"] = machine_facts()
            record["total_s"] = time.perf_counter() - begun
            path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

        if name == "adult":
            methods = fairness_floor.REGTUNE_METHODS
            record = fairness_floor.measure_floor(
                {m: (ADULT_CONFIGS[m][1], threshold_rows_for("adult", m)) for m in methods},
                stored,
                smoke=smoke,
                smoke_epochs=SMOKE_EPOCHS,
                on_run=write,
                **kwargs,
            )
        else:

            def configs(split_seed: int, name: str = name) -> dict[str, tuple[Any, str | None]]:
                found = configs_for(name, selections[round_of(split_seed)], split_seed)
                return {m: (cfg, threshold_rows_for(name, m)) for m, (_, cfg) in found.items()}

            record = fairness_floor.measure_selected_floor(
                name,
                configs,
                stored,
                smoke=smoke,
                smoke_epochs=SMOKE_EPOCHS,
                on_run=write,
                **{"split_seeds": chosen, **kwargs},
            )
        write(record)
        print(f"wrote {path} (reproduced: {record['reproduced']})", flush=True)
    print(f"done ({time.perf_counter() - started:.0f}s)", flush=True)
    return 0


def _raw_path(name: str, smoke: bool, fresh: str | None = None) -> Path:
    tag = f"-{fresh}" if fresh else ""
    return results_dir() / f"{NAME}_runs-{name}{tag}{'-smoke' if smoke else ''}.json"


def run_dataset(
    name: str,
    selection: dict[str, Any],
    split_seeds: Sequence[int],
    seeds: Sequence[int],
    *,
    smoke: bool,
    only: Sequence[str] | None = None,
    fresh: str | None = None,
) -> dict[str, Any]:
    """Every contender on ``name`` over ``split_seeds`` x ``seeds``.

    With ``only`` (method names), only those are run; the other methods'
    rows are kept from the existing run file, which must cover the same
    split seeds and seeds (fairlearn is deterministic per split and seed, so
    its rows are what a rerun would measure).

    After each (split, seed) the runs so far are written to
    ``fairness_splits_runs-<name>.json``, so a run stopped early leaves what
    it measured (and says how far it got: ``complete``); with ``fresh`` (a
    re-check round), ``fairness_splits_runs-<name>-<fresh>.json``.
    """
    by_split = {k: configs_for(name, selection, k) for k in split_seeds}
    configs = by_split[split_seeds[0]]
    record: dict[str, Any] = {
        "dataset": name,
        "split_seeds": list(split_seeds),
        "seeds": list(seeds),
        # Per split seed (German/COMPAS choose one per split); threshold_rows:
        # the override passed to train (None: the config's own key).
        "configs": {
            m: {
                "gap": k,
                "config_by_split_seed": {str(s): by_split[s][m][1] for s in split_seeds},
                "threshold_rows": threshold_rows_for(name, m),
            }
            for m, (k, _) in configs.items()
        },
        "runs": {m: [] for m in [*configs, *FAIRLEARN]},
        "smallest_cells": {},
        "complete": False,
        "smoke_test": smoke,
        "machine": machine_facts(),
    }
    runs: dict[str, list[dict[str, float]]] = record["runs"]
    path = _raw_path(name, smoke, fresh)
    path.parent.mkdir(parents=True, exist_ok=True)
    kept: dict[str, list[dict[str, float]]] = {}
    if only is not None:
        earlier = _kept_runs(path, only, split_seeds, seeds, known=[*configs, *FAIRLEARN])
        kept = earlier.runs
        # A kept method's rows were run with the earlier file's config, not today's.
        record["configs"].update(earlier.configs)
    record["kept_from_earlier_run"] = sorted(kept)
    for split_seed in split_seeds:
        ds = load_dataset(DatasetConfig(name=name, split_seed=split_seed))
        record["smallest_cells"][str(split_seed)] = smallest_cells(ds)
        fits = {
            m: fairlearn_fit(algorithm, kind, constraint, ds, smoke=smoke)
            for m, (kind, algorithm, constraint) in FAIRLEARN.items()
            if m not in kept
        }
        for seed in seeds:
            for method, rows in kept.items():
                runs[method] += [
                    r for r in rows if (r["split_seed"], r["seed"]) == (split_seed, seed)
                ]
            for method, (kind, cfg) in by_split[split_seed].items():
                if method in kept:
                    continue
                row = _regtune_run(
                    cfg,
                    kind,
                    ds,
                    split_seed,
                    seed,
                    smoke=smoke,
                    threshold_rows=threshold_rows_for(name, method),
                )
                runs[method].append({**row, "split_seed": split_seed, "seed": seed})
            for method, fit in fits.items():
                row = {**fairlearn_scores(fit, ds, "test", seed), "fit_s": fit.fit_s}
                runs[method].append({**row, "split_seed": split_seed, "seed": seed})
            for method, rows in runs.items():
                r = rows[-1]
                print(
                    f"{name} split {split_seed} seed {seed} {method}: acc {r['acc']:.4f} "
                    f"gap {r['gap']:.4f} ece {r['ece']:.4f} fit {r['fit_s']:.1f}s",
                    flush=True,
                )
            path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    record["complete"] = True
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


class Kept(NamedTuple):
    """What ``--only`` keeps from an earlier run file: each kept method's rows
    and its ``configs`` entry (where the file has one)."""

    runs: dict[str, list[dict[str, float]]]
    configs: dict[str, Any]


def _kept_runs(
    path: Path,
    only: Sequence[str],
    split_seeds: Sequence[int],
    seeds: Sequence[int],
    *,
    known: Sequence[str] = (),
) -> Kept:
    """The rows and configs of every method not in ``only`` from the run file
    at ``path`` (read once). A method of ``only`` must be in that file or in
    ``known`` (the dataset's contenders now: one added since the file was
    written runs for the first time)."""
    if not path.is_file():
        raise SystemExit(f"--only needs the earlier run file {path}; run without --only first")
    earlier = json.loads(path.read_text())
    if sorted(earlier["split_seeds"]) != sorted(split_seeds) or sorted(earlier["seeds"]) != sorted(
        seeds
    ):
        raise SystemExit(
            f"--only: {path} covers split seeds {earlier['split_seeds']} x seeds "
            f"{earlier['seeds']}, not {list(split_seeds)} x {list(seeds)}"
        )
    allowed = sorted({*earlier["runs"], *known})
    unknown = sorted(set(only) - set(allowed))
    if unknown:
        raise SystemExit(f"--only: unknown methods {unknown}; known: {allowed}")
    runs = {m: rows for m, rows in earlier["runs"].items() if m not in only}
    configs = earlier.get("configs", {})  # absent in files from before configs were kept
    return Kept(runs, {m: configs[m] for m in runs if m in configs})


def _summaries(
    runs: dict[str, dict[str, list[dict[str, float]]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        name: {m: _summary(rows) for m, rows in by.items() if rows} for name, by in runs.items()
    }


def _with_runs(
    earlier: dict[str, dict[str, list[dict[str, float]]]],
    runs: dict[str, dict[str, list[dict[str, float]]]],
) -> dict[str, dict[str, list[dict[str, float]]]]:
    """``earlier``'s runs (dataset -> method -> runs) with ``runs`` after them (a new dict)."""
    out = {n: dict(by) for n, by in earlier.items()}
    for n, by in runs.items():
        into = out.setdefault(n, {})
        for m, rows in by.items():
            into[m] = [*into.get(m, []), *rows]
    return out


def fresh_section(
    main_runs: dict[str, dict[str, list[dict[str, float]]]],
    fresh_records: dict[str, dict[str, Any]],
    selection: dict[str, Any],
    round_: str = FRESH,
) -> tuple[str, dict[str, Any]]:
    """The report's part on re-check round ``round_``'s split seeds (markdown, JSON).

    ``main_runs``: dataset -> method -> runs of the split seeds before it
    (the issue's and earlier rounds'); ``fresh_records``: dataset -> the
    round's run file; ``selection``: the round's German/COMPAS selection
    (:func:`load_selected`). Gives the round's results and goals alone, then
    the goals over every split seed run so far (a method's runs of both,
    paired by split seed and seed).
    """
    runs = {n: r["runs"] for n, r in fresh_records.items()}
    summaries = _summaries(runs)
    merged = _with_runs(main_runs, runs)
    both = {n: {m: merged[n][m] for m, rows in by.items() if rows} for n, by in runs.items()}
    both_summaries = _summaries(both)
    fresh_goals, all_goals = goals(summaries, runs), goals(both_summaries, both)
    seeds_of = {
        n: (
            sorted({int(x["split_seed"]) for rows in by.values() for x in rows}),
            sorted({int(x["seed"]) for rows in by.values() for x in rows}),
        )
        for n, by in both.items()
    }
    ran = "; ".join(
        f"{n}: split seeds {r['split_seeds']} x training seeds {r['seeds']}"
        f"{'' if r['complete'] else ' (INCOMPLETE: stopped early)'}"
        for n, r in fresh_records.items()
    )
    fresh_seeds = sorted({int(k) for r in fresh_records.values() for k in r["split_seeds"]})
    counts = "; ".join(
        f"{n}: split seeds {splits} x seeds {seeds}" for n, (splits, seeds) in seeds_of.items()
    )
    files = {n: _selection_path(n, False, Path(), fresh=round_).name for n in selection["datasets"]}
    fixed = [n for n in fresh_records if n in BUILTINS and BUILTINS[n].official_test]
    resplit = [n for n in fresh_records if n not in fixed]
    test_rows = (
        f" {', '.join(fixed)}: a split seed re-draws the training and validation rows "
        "only; the test split is always the official test file, whose rows every earlier "
        "run had been scored on, so here the models and their fitting rows are new and "
        "the test rows are not."
        if fixed
        else ""
    ) + (
        f" {', '.join(resplit)}: a split seed re-splits all rows, so the test rows are "
        "new draws (two random splits share about 15% of their test rows)."
        if resplit
        else ""
    )
    md = (
        f"### Re-check on split seeds {fresh_seeds}, which no run had used\n\n"
        f"Ran {ran}. Before this re-check no selection, validation or test run of any "
        "method had used these split seeds. Every method, candidate list, target and "
        "rule is the code and configuration of the tables above, fixed before these "
        "runs: Adult's configs as above; German/COMPAS settings chosen per split seed by "
        "the same nested selection on that split's training and validation rows only ("
        + (", ".join(f"`{f}`" for f in files.values()) or "none run")
        + "), written before their test rows ran. No setting was changed after these "
        f"test numbers were read. {ROUND_NOTES[round_]}{test_rows}\n\n"
        f"{_results_table(summaries, selection)}\n\n"
        f"Goals of issue 9 on these split seeds alone:\n\n{_goal_table(fresh_goals)}\n\n"
        f"Goals of issue 9 over every split seed run ({counts}; paired differences over "
        "the runs both methods have, intervals over the split seeds' mean differences). "
        f"{CHANCE_NOTE}\n\n{_goal_table(all_goals)}\n\n"
        "Settings chosen per split seed on its training and validation rows (German, "
        f"COMPAS):\n\n{_chosen_table(selection, summaries)}\n\n"
        "Smallest (group, label) cell, rows, fewest over these split seeds:\n\n"
        f"{_cell_table({n: r['smallest_cells'] for n, r in fresh_records.items()})}\n"
    )
    payload = {
        "round": round_,
        "split_seeds": fresh_seeds,
        "fixed_test_split": fixed,
        "complete": {n: r["complete"] for n, r in fresh_records.items()},
        "selection_files": {n: f"benchmarks/results/{f}" for n, f in files.items()},
        "runs": runs,
        "summary": summaries,
        "goals": fresh_goals,
        "all_split_seeds": {"ran": counts, "summary": both_summaries, "goals": all_goals},
        "smallest_cells": {n: r["smallest_cells"] for n, r in fresh_records.items()},
    }
    return md, payload


def _records(datasets: Sequence[str], smoke: bool, fresh: str | None) -> dict[str, dict[str, Any]]:
    paths = {name: _raw_path(name, smoke, fresh) for name in datasets}
    return {name: json.loads(p.read_text()) for name, p in paths.items() if p.is_file()}


def report(
    datasets: Sequence[str], selection: dict[str, Any], *, smoke: bool, total_s: float
) -> Path:
    """Build ``fairness_splits.json``/``.md`` from the per-dataset run files
    present: the issue's split seeds', then (when present) each re-check
    round's (:data:`ROUNDS`, :func:`fresh_section`)."""
    records = _records(datasets, smoke, fresh=None)
    rounds = {r: found for r in ROUNDS if (found := _records(datasets, smoke, fresh=r))}
    if not records and not rounds:
        raise SystemExit(f"no run files {NAME}_runs-*.json in {results_dir()}: nothing to report")
    results = {n: r["runs"] for n, r in records.items()}
    summaries = _summaries(results)
    cells = {n: r["smallest_cells"] for n, r in records.items()}
    ran = {
        n: {
            "complete": r["complete"],
            "runs_per_method": {m: len(rows) for m, rows in r["runs"].items()},
            "split_seeds": sorted(
                {int(x["split_seed"]) for rows in r["runs"].values() for x in rows}
            ),
            "seeds": sorted({int(x["seed"]) for rows in r["runs"].values() for x in rows}),
            "kept_from_earlier_run": r.get("kept_from_earlier_run", []),
        }
        for n, r in records.items()
    }
    goal_rows = goals(summaries, results)
    adult_eo = load_adult_eo_selection(smoke)
    md = (
        markdown(summaries, goal_rows, cells, selection, ran, smoke=smoke, adult_eo=adult_eo)
        if records
        else ""
    )
    rechecks: dict[str, dict[str, Any]] = {}
    earlier = results
    for round_, found in rounds.items():
        round_md, rechecks[round_] = fresh_section(
            earlier, found, load_selected(smoke, fresh=round_), round_
        )
        md = f"{md.rstrip()}\n\n{round_md}" if md else round_md
        earlier = _with_runs(earlier, {n: r["runs"] for n, r in found.items()})
    floor = load_floor(smoke)
    by_round: dict[str, dict[str, dict[str, Any]]] = {"0-2": records, **rounds}
    adult_rounds = {r: found["adult"]["runs"] for r, found in by_round.items() if "adult" in found}
    floor_md = fairness_floor.floor_text(floor, adult_rounds)
    for name in SELECTED_DATASETS:
        selected_md = fairness_floor.selected_floor_text(load_floor(smoke, name))
        if selected_md:
            floor_md = f"{floor_md.rstrip()}\n\n{selected_md}" if floor_md else selected_md
    if floor_md:
        md = f"{md.rstrip()}\n\n{floor_md}"
    now = machine_facts()
    payload = {
        "datasets": list(records),
        "ran": ran,
        "configs": {n: r["configs"] for n, r in records.items()},
        "selection": {
            "files": {
                n: f"benchmarks/results/{SELECTION_NAME}_{n}.json"
                for n in selection.get("datasets", {})
            },
            "protocol": "nested: split seed k's setting chosen on split k's training and "
            "validation rows only (hold-out re-splits); no test row in any selection run",
            "earlier_selection": f"benchmarks/results/{SELECTION_NAME}.json (superseded; its "
            "test rows were read before the nested selection was written)",
            "chosen": {
                n: {
                    k: {kind: v["chosen"] for kind, v in split["kinds"].items()}
                    for k, split in e["splits"].items()
                }
                for n, e in selection.get("datasets", {}).items()
            },
        },
        "looked_at_test_to_choose": False,
        "adult_eo_robust_selection": None
        if adult_eo is None
        else {
            "file": f"benchmarks/results/{_selection_path(ADULT_EO, False, Path()).name}",
            "chosen": adult_eo.get("chosen"),
            "why": adult_eo.get("why"),
            "protocol": adult_eo.get("protocol"),
        },
        "fairlearn": {m: list(v) for m, v in FAIRLEARN.items()},
        "ci": f"{CI_LEVEL:.0%} t-interval of the mean over the split seeds' means",
        "runs": results,
        "summary": summaries,
        "goals": goal_rows,
        "smallest_cells": cells,
        "rechecks": rechecks,
        "noise_floor": _floor_summary(floor),
        # This process only; with --report-only that is the report step. The
        # runs' own times are each run's fit_s (taken on a loaded 2-core machine).
        "total_s": total_s,
        "peak_rss_mb": peak_rss_mb(),
        # The numbers' date is their newest run file's, not this report's.
        "machine": {
            **now,
            "date": max(
                (
                    str(r["machine"]["date"])
                    for r in [*records.values(), *(x for f in rounds.values() for x in f.values())]
                    if "machine" in r
                ),
                default=now["date"],
            ),
            "report_built": now["date"],
        },
    }
    path = write_results(NAME, payload, md, smoke=smoke)
    print(md)
    return path


def _assessment_flag(name: str) -> str:
    return f"--select-adult-eo-{name}"


def _assess(
    name: str,
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    started: float,
    smoke: bool,
) -> int:
    """Run the Adult EO assessment ``name`` (:data:`ASSESSMENTS`; flag
    ``--select-adult-eo-<name>``) and write its record
    ``fairness_splits_selection_adult_eo_<name>.json``."""
    function, _ = ASSESSMENTS[name]
    flag = _assessment_flag(name)
    ignored = {
        "--fresh": args.fresh is not None,
        "--split-seeds": args.split_seeds is not None,
        "--seeds": args.seeds is not None,
        "--datasets": args.datasets is not None,
        "--only": args.only is not None,
        "--select": args.select,
        "--select-only": args.select_only,
        "--select-adult-eo": args.select_adult_eo,
        "--report-only": args.report_only,
        **{
            _assessment_flag(other): getattr(args, f"select_adult_eo_{other}")
            for other in ASSESSMENTS
            if other != name
        },
    }
    if any(ignored.values()):
        own = inspect.signature(function).parameters
        parser.error(
            f"{flag} runs Adult EO on its own split seeds and seeds "
            f"({list(own['split_seeds'].default)} x {list(own['seeds'].default)}) and "
            f"stops; drop {'/'.join(k for k, on in ignored.items() if on)}"
        )
    path = _selection_path(f"{ADULT_EO}_{name}", smoke, results_dir())
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(record: dict[str, Any]) -> None:
        record["machine"] = machine_facts()
        record["total_s"] = time.perf_counter() - started
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    kwargs = {"split_seeds": DEFAULT_SPLIT_SEEDS[:1], "seeds": DEFAULT_SEEDS[:1]} if smoke else {}
    record = function(
        ADULT_CONFIGS[EO][1], smoke=smoke, cache=args.scores_cache, on_run=write, **kwargs
    )
    write(record)
    print(f"chosen: {record['chosen']} ({record['why']}); wrote {path}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; write JSON + markdown to ``benchmarks/results/``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", help="1 split, 1 seed, 1 epoch")
    parser.add_argument(
        "--select",
        action="store_true",
        help="first choose the German/COMPAS settings on validation (fairness_selection)",
    )
    parser.add_argument(
        "--select-only", action="store_true", help="with --select: stop after the selection"
    )
    parser.add_argument(
        "--select-adult-eo",
        action="store_true",
        help="choose Adult EO's robust-threshold setting on validation only "
        "(fairness_selection.select_adult_eo), write its JSON and stop",
    )
    parser.add_argument(
        "--select-adult-eo-crossfit",
        action="store_true",
        help="assess Adult EO thresholds fitted on out-of-fold training scores on validation "
        "only (benchmarks.fairness_crossfit), write its JSON and stop",
    )
    parser.add_argument(
        "--select-adult-eo-base",
        action="store_true",
        help="assess Adult EO thresholds on an unconstrained model on validation only "
        "(benchmarks.fairness_base), write its JSON and stop",
    )
    parser.add_argument(
        "--select-adult-eo-ensemble",
        action="store_true",
        help="assess a seed ensemble of the Adult EO model on validation only "
        "(benchmarks.fairness_ensemble), write its JSON and stop",
    )
    parser.add_argument(
        "--select-adult-eo-lottery",
        action="store_true",
        help="assess randomized thresholds (a lottery) for Adult EO on validation only "
        "(benchmarks.fairness_lottery), write its JSON and stop",
    )
    parser.add_argument(
        "--scores-cache",
        type=Path,
        default=None,
        help="with --select-adult-eo, -crossfit, -base, -ensemble or -lottery: folder to keep "
        "each "
        "run's scores in",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the report from the per-dataset run files; train nothing",
    )
    parser.add_argument(
        "--select-pooled",
        action="store_true",
        help="German/COMPAS, fourth selection (benchmarks/fairness_pooled.py): add the "
        "randomized candidates to the records of split seeds 0-8, choose one setting per "
        "dataset and gap kind on their pooled hold-out numbers, write it into the records; stop",
    )
    parser.add_argument(
        "--select-repooled",
        action="store_true",
        help="German/COMPAS, fifth selection (benchmarks/fairness_repooled.py): the fourth's "
        "candidates and rule over the stored hold-out numbers of split seeds 0-14; trains "
        "nothing, changes no record; stop",
    )
    parser.add_argument(
        "--apply-pooled",
        choices=[r for r in ROUNDS if r not in fairness_pooled.POOLED_ROUNDS],
        default=None,
        metavar="ROUND",
        help="write the pooled choice into a later round's selection records (written first "
        "by --select --select-only --fresh ROUND); stop",
    )
    parser.add_argument(
        "--measure-floor",
        action="store_true",
        help="how much of the measured gaps is the test rows' own noise "
        "(benchmarks/fairness_floor.py; --datasets, default adult: Adult EO against its "
        "goals, German/COMPAS against the gaps compared); write the JSON and stop",
    )
    parser.add_argument(
        "--fresh",
        nargs="?",
        const=FRESH,
        default=None,
        choices=list(ROUNDS),
        metavar="ROUND",
        help="re-check round on split seeds no run had used before it ("
        + ", ".join(f"{r}: {list(s)}" for r, s in ROUNDS.items())
        + f"; no name: {FRESH}): selection and run files named *_ROUND/*-ROUND, "
        "a section of its own in the report",
    )
    parser.add_argument("--datasets", nargs="+", default=None, help="default: all three")
    parser.add_argument(
        "--split-seeds", type=int, nargs="+", default=None, help=f"default {DEFAULT_SPLIT_SEEDS}"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help=f"default {DEFAULT_SEEDS}"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        help="rerun only these methods (e.g. 'regtune EO'); keep the others' rows",
    )
    args = parser.parse_args(argv)
    if args.select_repooled:
        if args.smoke_test or args.select_pooled or args.apply_pooled:
            parser.error("--select-repooled runs alone (no --smoke-test)")
        return fairness_repooled.run()
    if args.select_pooled or args.apply_pooled:
        if args.smoke_test or (args.select_pooled and args.apply_pooled):
            parser.error("--select-pooled and --apply-pooled run alone (no --smoke-test)")
        return fairness_pooled.run(apply=args.apply_pooled)
    smoke: bool = args.smoke_test
    if args.measure_floor:
        others = {
            "--fresh": args.fresh is not None,
            "--split-seeds with adult": args.split_seeds is not None
            and "adult" in (args.datasets or ["adult"]),
            "--seeds": args.seeds is not None,
            "--only": args.only is not None,
            "--select": args.select or args.select_only or args.select_adult_eo,
            "--report-only": args.report_only,
            **{_assessment_flag(n): getattr(args, f"select_adult_eo_{n}") for n in ASSESSMENTS},
        }
        if any(others.values()):
            parser.error(
                f"--measure-floor runs seeds {list(fairness_floor.SEEDS)} on split seeds "
                f"{list(fairness_floor.SPLIT_SEEDS)} (German/COMPAS: --split-seeds chooses "
                f"others) and stops; drop {'/'.join(k for k, on in others.items() if on)}"
            )
        unknown = sorted(set(args.datasets or ()) - set(DEFAULT_DATASETS))
        if unknown:
            parser.error(
                f"--measure-floor --datasets: unknown {unknown}; allowed {list(DEFAULT_DATASETS)}"
            )
        torch.set_num_threads(TORCH_THREADS)
        known = {*DEFAULT_SPLIT_SEEDS, *(k for seeds_ in ROUNDS.values() for k in seeds_)}
        unrun = sorted(set(args.split_seeds or ()) - known)
        if unrun:
            parser.error(
                f"--measure-floor --split-seeds: {unrun} have no stored runs or selection; "
                f"allowed {sorted(known)}"
            )
        # Each dataset and split seed once, in the order given.
        return _measure_floor(
            smoke,
            time.perf_counter(),
            list(dict.fromkeys(args.datasets or ["adult"])),
            None if args.split_seeds is None else list(dict.fromkeys(args.split_seeds)),
        )
    datasets: list[str] = args.datasets or list(SMOKE_DATASETS if smoke else DEFAULT_DATASETS)
    fresh: str | None = args.fresh
    split_seeds: list[int] = args.split_seeds or list(
        ROUNDS[fresh] if fresh else DEFAULT_SPLIT_SEEDS
    )
    if fresh:
        if args.select_adult_eo:
            parser.error("--select-adult-eo chooses on the issue's split seeds; drop --fresh")
        before = list(ROUNDS)[: list(ROUNDS).index(fresh)]
        seen = {
            *DEFAULT_SPLIT_SEEDS,
            *ADULT_EO_SPLIT_SEEDS,
            *(s for r in before for s in ROUNDS[r]),
        }
        used = sorted(set(split_seeds) & seen)
        if used:
            parser.error(
                f"--fresh {fresh}: split seeds {used} were used before (selection, validation "
                f"or test runs); choose others, e.g. {list(ROUNDS[fresh])}"
            )
    seeds: list[int] = args.seeds or list(DEFAULT_SEEDS)
    if smoke:
        split_seeds, seeds = split_seeds[:1], seeds[:1]
    torch.set_num_threads(TORCH_THREADS)
    started = time.perf_counter()
    for name in ASSESSMENTS:
        if getattr(args, f"select_adult_eo_{name}"):
            return _assess(name, parser, args, started, smoke)
    if args.select_adult_eo:
        if not smoke and (args.split_seeds is not None or args.seeds is not None):
            parser.error(
                "--select-adult-eo runs its own split seeds and seeds "
                f"({list(ADULT_EO_SPLIT_SEEDS)} x {list(ADULT_EO_SEEDS)}); "
                "drop --split-seeds/--seeds"
            )
        path = _selection_path(ADULT_EO, smoke, results_dir())
        path.parent.mkdir(parents=True, exist_ok=True)

        def write_eo(record: dict[str, Any], path: Path = path) -> None:
            record["machine"] = machine_facts()
            record["total_s"] = time.perf_counter() - started
            path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

        eo = ADULT_CONFIGS[EO][1]
        kwargs = {"split_seeds": split_seeds[:1], "seeds": seeds[:1]} if smoke else {}
        record = select_adult_eo(
            eo, smoke=smoke, cache=args.scores_cache, on_run=write_eo, **kwargs
        )
        write_eo(record)
        print(f"chosen: {record['chosen']} ({record['why']}); wrote {path}", flush=True)
        return 0
    if args.select:
        out = results_dir()
        out.mkdir(parents=True, exist_ok=True)
        for name in (d for d in datasets if d in SELECTED_DATASETS):
            path = _selection_path(name, smoke, out, fresh)

            def write(record: dict[str, Any], path: Path = path) -> None:
                record["machine"] = machine_facts()
                record["total_s"] = time.perf_counter() - started
                path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

            write(select_dataset(name, split_seeds, smoke=smoke, on_split=write))
            print(f"wrote {path} ({time.perf_counter() - started:.0f}s)", flush=True)
        if args.select_only:
            return 0
    selection = load_selected(smoke, fresh)
    if not args.report_only:
        for name in datasets:
            run_dataset(
                name, selection, split_seeds, seeds, smoke=smoke, only=args.only, fresh=fresh
            )
    # The report's main part reads the issue's split seeds' selection; its
    # --fresh section reads its own (fresh_section).
    path = report(
        DEFAULT_DATASETS, load_selected(smoke), smoke=smoke, total_s=time.perf_counter() - started
    )
    print(f"wrote {path} ({time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
