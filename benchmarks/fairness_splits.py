"""Fairness over several splits: regtune DP/EO (selection, post-processing,
calibration) against fairlearn's ExponentiatedGradient and ThresholdOptimizer.

Run::

    python -m benchmarks.fairness_splits [--smoke-test] [--datasets adult german compas]
        [--split-seeds 0 1 2] [--seeds 0 1 2]

Every contender sees the same splits (``dataset.split_seed``): it fits on the
train split, regtune also selects epochs / fits thresholds / temperatures on
the validation split, and all are scored on the test split with regtune's
metric functions (15-bin ECE, ``fairness.dp_difference`` /
``eo_difference``). Reported per dataset and contender, over splits x seeds:
mean, worst case (lowest accuracy, largest gap, largest ECE) and a 95%
normal interval of the mean (``mean ± 1.96 sd / sqrt(runs)``), plus the mean
bootstrap interval of the test gap within one run (regtune rows).

The regtune configs are fixed in :data:`CONFIGS` (validation-chosen for Adult
in ``benchmarks/trainables_fairness.py``; not re-tuned per dataset): no run
of this benchmark looks at test numbers to choose anything.
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
from regtune.trainables.config import DatasetConfig
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.loop import train

NAME = "fairness_splits"
DEFAULT_DATASETS = ("adult",)
DEFAULT_SPLIT_SEEDS = (0, 1, 2)
DEFAULT_SEEDS = (0, 1, 2)
#: torch intra-op threads per run.
TORCH_THREADS = 1
#: fairlearn's inner LogisticRegression iterations and EG outer iterations.
FAIRLEARN_LR_MAX_ITER = 1000
FAIRLEARN_EG_MAX_ITER = 50
#: Smoke test: one split, one seed, one epoch, fairlearn on few rows / iterations.
SMOKE_EPOCHS = 1
SMOKE_FAIRLEARN_ROWS = 400
SMOKE_FAIRLEARN_EG_MAX_ITER = 2
#: z of a 95% normal interval of the mean over runs.
Z95 = 1.96

_MLP = {"arch": "mlp", "width": 128, "depth": 2, "dropout": 0.1}
_TRAINING = {
    "epochs": 30,
    "batch_size": 512,
    "lr": 1e-3,
    "optimizer": "adamw",
    "lr_schedule": "cosine",
    "robust_every": 0,
}

#: regtune contenders (dataset and seeds are set per run) and the gap each constrains.
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "regtune DP (penalty, calibrated)": (
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
    "regtune EO (lagrangian, bound 0.02 - 0.005, group-calibrated)": (
        "eo",
        {
            "model": _MLP,
            "training": {**_TRAINING, "calibration": "group_temperature"},
            "penalties": {
                "fairness": {
                    "kind": "eo",
                    "method": "lagrangian",
                    "strength": 10.0,
                    "dual_lr": 1.0,
                    "bound": 0.02,
                    "margin": 0.005,
                }
            },
        },
    ),
    "regtune EO (lagrangian+postprocess, group-calibrated)": (
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
                    "margin": 0.005,
                }
            },
        },
    ),
}
#: fairlearn contenders: (gap, algorithm, constraint).
FAIRLEARN: dict[str, tuple[str, str, str]] = {
    "fairlearn EG-DP": ("dp", "eg", "demographic_parity"),
    "fairlearn EG-EO": ("eo", "eg", "equalized_odds"),
    "fairlearn TO-DP": ("dp", "to", "demographic_parity"),
    "fairlearn TO-EO": ("eo", "to", "equalized_odds"),
}
METRICS = ("acc", "gap", "ece")


def _regtune_run(
    cfg: dict[str, Any], kind: str, ds: Dataset, split_seed: int, seed: int, *, smoke: bool
) -> dict[str, float]:
    cfg = copy.deepcopy(cfg)
    cfg["dataset"] = {"name": ds.name, "split_seed": split_seed}
    cfg["training"]["seed"] = seed
    if smoke:
        cfg["training"]["epochs"] = SMOKE_EPOCHS
    result = train(cfg, dataset=ds)
    t = result.test_metrics
    key = "dp_diff" if kind == "dp" else "eo_diff"
    return {
        "acc": t["test_acc"],
        "gap": t[f"test_{key}"],
        "gap_ci_low": t[f"test_{key}_ci_low"],
        "gap_ci_high": t[f"test_{key}_ci_high"],
        "ece": t["test_ece"],
        "fit_s": result.elapsed_s,
        "kept_epoch": t.get("kept_epoch", float(result.best_epoch)),
    }


def _fairlearn_run(
    algorithm: str, constraint: str, kind: str, ds: Dataset, seed: int, *, smoke: bool
) -> dict[str, float]:
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
    from sklearn.linear_model import LogisticRegression

    assert ds.train.s is not None and ds.test.s is not None  # fairness datasets have groups
    rows = slice(0, SMOKE_FAIRLEARN_ROWS if smoke else None)
    # float64: ThresholdOptimizer writes float64 scores into frames of x's dtype.
    x = ds.train.x[rows].double().numpy()
    y, s = ds.train.y[rows].numpy(), ds.train.s[rows].numpy()
    x_test, y_test, s_test = ds.test.x.double().numpy(), ds.test.y, ds.test.s
    lr = LogisticRegression(max_iter=FAIRLEARN_LR_MAX_ITER)
    started = time.perf_counter()
    if algorithm == "eg":
        eg = ExponentiatedGradient(
            lr,
            constraints=DemographicParity() if kind == "dp" else EqualizedOdds(),
            max_iter=SMOKE_FAIRLEARN_EG_MAX_ITER if smoke else FAIRLEARN_EG_MAX_ITER,
        )
        eg.fit(x, y, sensitive_features=s)
        fit_s = time.perf_counter() - started
        y_pred = torch.as_tensor(np.asarray(eg.predict(x_test, random_state=seed))).long()
        probs = torch.as_tensor(np.asarray(eg._pmf_predict(x_test)), dtype=torch.float64)
    else:
        to = ThresholdOptimizer(
            estimator=lr, constraints=constraint, predict_method="predict_proba"
        )
        to.fit(x, y, sensitive_features=s)
        fit_s = time.perf_counter() - started
        y_pred = torch.as_tensor(
            np.asarray(to.predict(x_test, sensitive_features=s_test.numpy(), random_state=seed))
        ).long()
        # Its randomised decisions have no calibrated score; ECE of the hard
        # decision as a one-hot probability (what a client receives).
        probs = F.one_hot(y_pred, 2).double()
    gap = (
        fairness.dp_difference(y_pred, s_test)
        if kind == "dp"
        else fairness.eo_difference(y_test, y_pred, s_test)
    )
    return {
        "acc": metrics.accuracy(F.one_hot(y_pred, 2).double(), y_test),
        "gap": gap,
        "ece": metrics.expected_calibration_error(probs, y_test),
        "fit_s": fit_s,
    }


def _summary(runs: Sequence[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(runs)}
    for key in (*METRICS, "fit_s"):
        values = [r[key] for r in runs]
        mean = statistics.fmean(values)
        half = Z95 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
        worst = min(values) if key == "acc" else max(values)
        out[key] = {"mean": mean, "worst": worst, "ci": [mean - half, mean + half]}
    if all("gap_ci_low" in r for r in runs):
        out["gap_bootstrap_ci_mean"] = [
            statistics.fmean(r["gap_ci_low"] for r in runs),
            statistics.fmean(r["gap_ci_high"] for r in runs),
        ]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; write JSON + markdown to ``benchmarks/results/``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", help="1 split, 1 seed, 1 epoch")
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS))
    parser.add_argument("--split-seeds", type=int, nargs="+", default=list(DEFAULT_SPLIT_SEEDS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    args = parser.parse_args(argv)
    smoke: bool = args.smoke_test
    split_seeds: list[int] = args.split_seeds[:1] if smoke else args.split_seeds
    seeds: list[int] = args.seeds[:1] if smoke else args.seeds
    torch.set_num_threads(TORCH_THREADS)
    started = time.perf_counter()
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for name in args.datasets:
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in [*CONFIGS, *FAIRLEARN]}
        for split_seed in split_seeds:
            ds = load_dataset(DatasetConfig(name=name, split_seed=split_seed))
            for seed in seeds:
                for method, (kind, cfg) in CONFIGS.items():
                    row = _regtune_run(cfg, kind, ds, split_seed, seed, smoke=smoke)
                    runs[method].append({**row, "split_seed": split_seed, "seed": seed})
                for method, (kind, algorithm, constraint) in FAIRLEARN.items():
                    row = _fairlearn_run(algorithm, constraint, kind, ds, seed, smoke=smoke)
                    runs[method].append({**row, "split_seed": split_seed, "seed": seed})
                for method, rows in runs.items():
                    r = rows[-1]
                    print(
                        f"{name} split {split_seed} seed {seed} {method}: acc {r['acc']:.4f} "
                        f"gap {r['gap']:.4f} ece {r['ece']:.4f} fit {r['fit_s']:.1f}s",
                        flush=True,
                    )
        results[name] = runs
    summaries = {
        name: {m: _summary(rows) for m, rows in runs.items()} for name, runs in results.items()
    }
    headers = ["dataset", "method", "acc mean [95% CI] / worst", "gap mean / worst", "ECE mean"]
    table_rows = []
    for name, by_method in summaries.items():
        for method, summ in by_method.items():
            acc, gap, ece = summ["acc"], summ["gap"], summ["ece"]
            table_rows.append(
                [
                    name,
                    method,
                    f"{acc['mean']:.4f} [{acc['ci'][0]:.4f}, {acc['ci'][1]:.4f}] / "
                    f"{acc['worst']:.4f}",
                    f"{gap['mean']:.4f} / {gap['worst']:.4f}",
                    f"{ece['mean']:.4f}",
                ]
            )
    table = markdown_table(headers, table_rows)
    md = (
        f"Splits {split_seeds} x seeds {seeds}{' — SMOKE TEST' if smoke else ''}; the gap is "
        "dp_diff for DP rows, eo_diff for EO rows. Settings were chosen on validation "
        "splits only; no run looked at test numbers to choose.\n\n"
        f"{table}\n"
    )
    payload = {
        "datasets": list(results),
        "split_seeds": split_seeds,
        "seeds": seeds,
        "configs": {m: {"gap": k, "config": c} for m, (k, c) in CONFIGS.items()},
        "fairlearn": {m: list(v) for m, v in FAIRLEARN.items()},
        "runs": results,
        "summary": summaries,
        "total_s": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
    }
    path = write_results(NAME, payload, md, smoke=smoke)
    print(table)
    print(f"wrote {path} ({payload['total_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
