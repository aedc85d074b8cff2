"""Fairness penalties on Adult (sex) against fairlearn's ExponentiatedGradient.

Run::

    python -m benchmarks.trainables_fairness [--smoke-test] [--seeds 0 1 2]

Both sides use the same data and splits: regtune's ``adult`` Dataset tensors
(train split to fit; the official ``adult.test`` file as the test split;
sensitive attribute ``sex``, which is also a model input). Every number is
computed with regtune's metric functions (``metrics.accuracy``,
``metrics.expected_calibration_error`` with 15 bins, ``fairness.dp_difference``,
``fairness.eo_difference``) on the test split.

- regtune rows: :func:`regtune.trainables.loop.train` with the configs in
  :data:`CONFIGS`, one run per seed. The configs were chosen by searching on
  the VALIDATION split only (see :data:`SELECTION`); test numbers are
  reported over seeds. Fit time is the whole ``train`` call (training plus
  the per-epoch validation pass).
- fairlearn rows: ``ExponentiatedGradient(LogisticRegression, DemographicParity
  | EqualizedOdds)`` fitted on the train split with ``sensitive_features`` =
  the train group codes. Its hard predictions are those of the randomized
  classifier (``predict(random_state=seed)``); its ECE uses the
  ``_pmf_predict`` probabilities (top label = their arg-max). The fit is
  deterministic (lbfgs), so it is fitted once per constraint; the seed only
  draws the randomized predictions.

Targets (seed means, test split) are in :data:`TARGETS`; a fairlearn row is
checked against the target of the regtune row with the same constraint. Each
row also gives the worst seed's value of every target metric (lowest accuracy,
highest gap or ECE) and whether those meet the target.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import markdown_table, peak_rss_mb, write_results
from regtune.trainables import fairness, metrics
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.loop import train

NAME = "trainables_fairness"
DEFAULT_SEEDS = (0, 1, 2)
#: torch intra-op threads: one, like the single-threaded lbfgs of the peer.
TORCH_THREADS = 1
#: LogisticRegression iterations inside ExponentiatedGradient (lbfgs converges well before).
FAIRLEARN_LR_MAX_ITER = 1000
#: ExponentiatedGradient outer iterations (fairlearn's default) and its smoke-test value.
FAIRLEARN_EG_MAX_ITER = 50
SMOKE_FAIRLEARN_EG_MAX_ITER = 2
SMOKE_EPOCHS = 1
#: Training rows the smoke test gives fairlearn (each of its LR fits is seconds on all rows).
SMOKE_FAIRLEARN_ROWS = 500

_MLP = {"arch": "mlp", "width": 128, "depth": 2, "dropout": 0.1}
_TRAINING = {
    "epochs": 20,
    "batch_size": 512,
    "lr": 1e-3,
    "optimizer": "adamw",
    "lr_schedule": "cosine",
    "robust_every": 0,
}

#: The regtune configurations (seed is set per run).
CONFIGS: dict[str, dict[str, Any]] = {
    "regtune unconstrained": {
        "dataset": "adult",
        "model": _MLP,
        "training": _TRAINING,
    },
    "regtune DP": {
        "dataset": "adult",
        "model": _MLP,
        "training": {**_TRAINING, "epochs": 30, "batch_size": 2048, "lr": 3e-3},
        "penalties": {"fairness": {"kind": "dp", "strength": 3.0}},
    },
    "regtune EO": {
        "dataset": "adult",
        "model": _MLP,
        "training": {**_TRAINING, "epochs": 30},
        "penalties": {
            "fairness": {"kind": "eo", "method": "lagrangian", "strength": 10.0, "dual_lr": 1.0}
        },
    },
}

#: How each config was chosen (validation split only; seeds 0-2 unless noted).
#: Why regtune EO's numbers differ from the first run's (checked 2026-12-03).
EO_HISTORY = (
    "regtune EO here is the Lagrangian alone, without the thresholds of the documented "
    "Adult EO method (benchmarks/fairness_splits.py). Its first run (2026-11-25: eo_diff "
    "0.0169 ± 0.0054, pass) does not reproduce: the code of that run (commit 04ee840) "
    "gives seed 0 eo_diff 0.0718 today, exactly as the current code does (with 1 or 2 torch "
    "threads), so the change is the environment, not regtune; the exact dependency "
    "pins (constraints.txt) arrived on 2026-11-30. The Lagrangian's outcome is this "
    "sensitive to small numerical differences (dual_lr 1 oscillates), which is why the "
    "documented method adds post-processing thresholds."
)

SELECTION: dict[str, str] = {
    "regtune unconstrained": "MLP 128x2, dropout 0.1, AdamW 1e-3, batch 512, cosine, 20 epochs.",
    "regtune DP": (
        "strength in {1, 1.5, 2, 3, 4, 6} at batch 512 / lr 1e-3 / 20 epochs: the best val "
        "dp_diff was 0.0188 (strength 1.5), stronger penalties raised it again (noisy batch "
        "gaps). At batch 2048 / lr 3e-3 / 30 epochs, strength 3 gave val dp_diff 0.006 and "
        "0.014 (seeds 0, 1) at val acc 0.833 / 0.838; temperature 0.5 and 0.3 were worse "
        "(val dp_diff 0.04, acc 0.82), and the Lagrangian method (bound 5, dual_lr 0.05) "
        "reached val dp_diff 0.011-0.015 at ECE 0.02-0.035."
    ),
    "regtune EO": (
        "fixed penalty: strength {1, 3, 6} at batch 512/lr 1e-3; {0.5, 1} at batch 1024/lr "
        "2e-3; {2, 3} x batch {1024, 2048} x dropout {0, 0.2} at lr 3e-3 (best val eo_diff "
        "0.042); sharpened (T 0.3-0.7), quantile and per-batch Lagrangian relaxations were "
        "unstable. Lagrangian with per-epoch dual steps on the whole training split, bound 10: "
        "dual_lr 5 oscillated (val eo_diff 0.01-0.27); dual_lr 1 (30 epochs, batch 512) gave "
        "val eo_diff 0.024 / 0.031 / 0.023 at val acc 0.847-0.849 (seeds 0-2; the test "
        "numbers of that one run were printed alongside)."
    ),
}

#: Targets on seed-mean test metrics: (metric, "<=" | ">=", bound).
TARGETS: dict[str, list[tuple[str, str, float]]] = {
    "unconstrained": [("acc", ">=", 0.85)],
    "dp": [("dp_diff", "<=", 0.02), ("acc", ">=", 0.835), ("ece", "<=", 0.02)],
    "eo": [("eo_diff", "<=", 0.02), ("acc", ">=", 0.837)],
}
#: Which target each method is checked against.
METHOD_TARGET = {
    "regtune unconstrained": "unconstrained",
    "regtune DP": "dp",
    "regtune EO": "eo",
    "fairlearn EG-DP": "dp",
    "fairlearn EG-EO": "eo",
}
METRICS = ("acc", "dp_diff", "eo_diff", "ece")


def _regtune_run(name: str, seed: int, ds: Dataset, *, smoke: bool) -> dict[str, float]:
    cfg = copy.deepcopy(CONFIGS[name])
    cfg["training"] = {**cfg["training"], "seed": seed}
    if smoke:
        cfg["training"]["epochs"] = SMOKE_EPOCHS
    result = train(cfg, dataset=ds)
    test = result.test_metrics
    return {
        "acc": test["test_acc"],
        "dp_diff": test["test_dp_diff"],
        "eo_diff": test["test_eo_diff"],
        "ece": test["test_ece"],
        "fit_s": result.elapsed_s,
        "epochs": float(len(result.history)),
    }


def _fairlearn_fit(kind: str, ds: Dataset, *, smoke: bool) -> tuple[Any, float]:
    """ExponentiatedGradient fitted on the train split; (model, fit seconds)."""
    from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
    from sklearn.linear_model import LogisticRegression

    assert ds.train.s is not None  # adult always has 'sex'
    constraint = DemographicParity() if kind == "dp" else EqualizedOdds()
    eg = ExponentiatedGradient(
        LogisticRegression(max_iter=FAIRLEARN_LR_MAX_ITER),
        constraints=constraint,
        max_iter=SMOKE_FAIRLEARN_EG_MAX_ITER if smoke else FAIRLEARN_EG_MAX_ITER,
    )
    rows = slice(0, SMOKE_FAIRLEARN_ROWS if smoke else None)
    x, y, s = (t[rows].numpy() for t in (ds.train.x, ds.train.y, ds.train.s))
    started = time.perf_counter()
    eg.fit(x, y, sensitive_features=s)
    return eg, time.perf_counter() - started


def _fairlearn_score(eg: Any, fit_s: float, seed: int, ds: Dataset) -> dict[str, float]:
    """Test metrics of the randomized classifier drawn with ``seed``."""
    assert ds.test.s is not None
    x_test, y_test, s_test = ds.test.x.numpy(), ds.test.y, ds.test.s
    y_pred = torch.as_tensor(np.asarray(eg.predict(x_test, random_state=seed))).long()
    probs = torch.as_tensor(np.asarray(eg._pmf_predict(x_test)), dtype=torch.float64)
    return {
        "acc": metrics.accuracy(F.one_hot(y_pred, 2).double(), y_test),
        "dp_diff": fairness.dp_difference(y_pred, s_test),
        "eo_diff": fairness.eo_difference(y_test, y_pred, s_test),
        "ece": metrics.expected_calibration_error(probs, y_test),
        "fit_s": fit_s,
        "n_predictors": float(len(eg.predictors_)),
    }


def _summary(runs: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per metric over seeds: mean, sd, min and max."""
    out = {}
    for key in (*METRICS, "fit_s"):
        values = [r[key] for r in runs]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        out[key] = {
            "mean": statistics.fmean(values),
            "sd": sd,
            "min": min(values),
            "max": max(values),
        }
    return out


def _worst(op: str) -> str:
    """The worst seed's statistic for a target ``op``: the lowest of a ``>=``
    bound's metric (accuracy), the highest of a ``<=`` one's (a gap, ECE)."""
    return "max" if op == "<=" else "min"


def _met(value: float, op: str, bound: float) -> bool:
    return value <= bound if op == "<=" else value >= bound


def _check(method: str, summary: dict[str, dict[str, float]]) -> tuple[bool, str, bool, str]:
    """(target met on the seed mean, the target, met by the worst seed too,
    the worst seed's value of each target metric): judged on the mean; the
    worst case is reported beside it."""
    target = TARGETS[METHOD_TARGET[method]]
    ok = all(_met(summary[m]["mean"], op, bound) for m, op, bound in target)
    worst_ok = all(_met(summary[m][_worst(op)], op, bound) for m, op, bound in target)
    text = ", ".join(f"{m} {op} {bound:g}" for m, op, bound in target)
    worst = ", ".join(f"{m} {summary[m][_worst(op)]:.4f}" for m, op, _ in target)
    return ok, text, worst_ok, worst


def _cell(stat: dict[str, float], digits: int = 4) -> str:
    if stat["sd"] == 0.0 or math.isnan(stat["sd"]):
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; write JSON + markdown to ``benchmarks/results/``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="1 seed, 1 epoch, EG on 2000 rows for 2 iterations",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    args = parser.parse_args(argv)
    smoke: bool = args.smoke_test
    seeds: list[int] = args.seeds[:1] if smoke else args.seeds
    torch.set_num_threads(TORCH_THREADS)

    started = time.perf_counter()
    ds = load_dataset("adult")
    print(
        f"adult: train {ds.train.x.shape[0]}, val {ds.val.x.shape[0]}, test {ds.test.x.shape[0]} "
        f"rows, {ds.n_features} features; groups {ds.group_names}",
        flush=True,
    )
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHOD_TARGET}
    fitted: dict[str, tuple[Any, float]] = {}
    for method in METHOD_TARGET:
        for seed in seeds:
            if method.startswith("regtune"):
                row = _regtune_run(method, seed, ds, smoke=smoke)
            else:
                if method not in fitted:
                    kind = "dp" if method.endswith("DP") else "eo"
                    fitted[method] = _fairlearn_fit(kind, ds, smoke=smoke)
                row = _fairlearn_score(*fitted[method], seed, ds)
            runs[method].append(row)
            print(
                f"seed {seed} {method:22s} acc {row['acc']:.4f} dp {row['dp_diff']:.4f} "
                f"eo {row['eo_diff']:.4f} ece {row['ece']:.4f} fit {row['fit_s']:.1f}s",
                flush=True,
            )

    summaries = {m: _summary(r) for m, r in runs.items()}
    checks = {m: _check(m, summaries[m]) for m in runs}
    headers = [
        "method",
        "test acc",
        "dp_diff",
        "eo_diff",
        "ECE",
        "fit time s",
        "target",
        "pass (mean)",
        "worst seed",
    ]
    rows = [
        [
            method,
            *(_cell(summaries[method][k]) for k in METRICS),
            _cell(summaries[method]["fit_s"], 1),
            checks[method][1],
            "pass" if checks[method][0] else "FAIL",
            f"{checks[method][3]} ({'met' if checks[method][2] else 'MISSED'})",
        ]
        for method in runs
    ]
    table = markdown_table(headers, rows)
    notes = "\n".join(f"- {m}: {text}" for m, text in SELECTION.items())
    md = (
        f"Adult (sensitive: sex), official test split, seeds {seeds} "
        f"(mean ± sd){' — SMOKE TEST' if smoke else ''}. Targets are judged on the mean "
        "over seeds; *worst seed* gives each target metric's worst value over the seeds "
        "(lowest accuracy, highest gap or ECE) and whether those values meet the target "
        f"too.\n\n{table}\n\n"
        "Configs chosen on the validation split only:\n"
        f"{notes}\n"
        "- fairlearn: ExponentiatedGradient(LogisticRegression(max_iter="
        f"{FAIRLEARN_LR_MAX_ITER}), max_iter={FAIRLEARN_EG_MAX_ITER}); hard predictions "
        "are its randomized classifier's, ECE uses its _pmf_predict probabilities.\n"
        f"\n{EO_HISTORY}\n"
    )
    payload = {
        "dataset": "adult",
        "sensitive": "sex",
        "seeds": seeds,
        "configs": CONFIGS,
        "selection": SELECTION,
        "targets": {k: [list(t) for t in v] for k, v in TARGETS.items()},
        "method_target": METHOD_TARGET,
        "runs": runs,
        "summary": summaries,
        "pass": {m: c[0] for m, c in checks.items()},
        "pass_worst_seed": {m: c[2] for m, c in checks.items()},
        "fairlearn": {
            "lr_max_iter": FAIRLEARN_LR_MAX_ITER,
            "eg_max_iter": SMOKE_FAIRLEARN_EG_MAX_ITER if smoke else FAIRLEARN_EG_MAX_ITER,
        },
        "total_s": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
    }
    path = write_results(NAME, payload, md, smoke=smoke)
    print(table)
    print(f"wrote {path} ({payload['total_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
