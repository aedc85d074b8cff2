"""Digits accuracy and adversarial robustness of regtune's trainables (issue 2).

For each model (MLP, small CNN) the same configuration is trained four ways
-- clean, FGSM-RS, PGD-7 and TRADES (PGD-7 and TRADES are the reference
methods) -- for seeds 0, 1, 2, and scored on the digits TEST split (pixels in
[0, 1]) for clean accuracy and for robust accuracy at eps = 0.1 (L-inf, pixel
units) under an attack that is not regtune's own:

- ``torchattacks.AutoAttack(norm='Linf', eps=0.1, version='standard')``
  (APGD-CE, APGD-T, FAB-T, Square), and
- ``torchattacks.PGD`` with 50 steps, 5 random restarts;

an example counts as robust only when it survives both (per-example worst
case). ``--smoke-test`` replaces them with one short PGD run so it stays fast.

Training time is the sum of the history's ``train_time_s`` (optimizer steps
only: no validation pass, ``robust_every=0``). The cost ratio vs clean uses the
MEDIAN epoch time of each run, because the 2-core machine is shared and a
burst of foreign load on a few epochs would otherwise decide the ratio.

How the configurations were chosen: on the VALIDATION split only (seeds 0-2,
clean val accuracy and regtune's PGD-50 x 3 restarts on val); the test split
is only scored here. Findings there: the one-cycle schedule at lr 0.01 is what
makes FGSM-RS work (constant lr 1e-3 for 50 epochs: val robust 0.75; one-cycle
0.01: 0.82 at width 128, 0.87 at width 512); width 512 also lifts the MLP's
clean val accuracy from ~0.964 to ~0.974; the CNN gains ~0.01 robust from
width 256 over 128 and nothing from 30 epochs over 20.

Run: ``python -m benchmarks.trainables_robustness [--smoke-test] [--seeds 0 1 2]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.common import markdown_table, peak_rss_mb, write_results
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.loop import train

NAME = "trainables_robustness"
#: Perturbation budget of training and evaluation (L-inf, pixel units).
EPS = 0.1
N_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)

#: Independent attack: PGD restarts x steps, step size (eps / 10: 50 steps travel 5 eps).
PGD_STEPS = 50
PGD_RESTARTS = 5
PGD_ALPHA = EPS / 10
SMOKE_PGD_STEPS = 3

#: Targets of issue 2.
TARGET_CLEAN_MLP = 0.97
TARGET_ROBUST = {"mlp": 0.80, "cnn": 0.87}
MAX_FGSM_COST = 2.0
#: Reference numbers quoted in issue 2 (not measured here).
ISSUE_REFERENCE = (
    "Issue 2 reference: 7-step PGD training reached 0.80 (MLP) / 0.87 (CNN); "
    "IBM ART's Madry trainer 0.81 (MLP) at 14x the clean cost."
)

#: The configuration per model, chosen on the validation split (module docstring).
BASE_CONFIGS: dict[str, dict[str, Any]] = {
    "mlp": {
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 512, "depth": 2, "dropout": 0.0},
        "training": {
            "epochs": 50,
            "batch_size": 128,
            "lr": 0.01,
            "optimizer": "adamw",
            "lr_schedule": "onecycle",
            "robust_every": 0,
            "device": "cpu",
        },
    },
    "cnn": {
        "dataset": "digits",
        "model": {"arch": "cnn", "width": 256, "dropout": 0.0},
        "training": {
            "epochs": 20,
            "batch_size": 128,
            "lr": 0.01,
            "optimizer": "adamw",
            "lr_schedule": "onecycle",
            "robust_every": 0,
            "device": "cpu",
        },
    },
}
#: ``penalties.adversarial`` per method; PGD and TRADES are the references.
METHODS: dict[str, dict[str, Any]] = {
    "clean": {"method": "none"},
    "fgsm_rs": {"method": "fgsm_rs", "eps": EPS},
    "pgd7": {"method": "pgd", "eps": EPS, "steps": 7},
    "trades": {"method": "trades", "eps": EPS, "steps": 7, "beta": 6.0},
}
#: --smoke-test (run by `make test` to check the benchmark runs; its numbers
#: mean nothing): one epoch of narrow models, a few test rows, a short PGD.
SMOKE_EPOCHS = 1
SMOKE_TEST_ROWS = 32
SMOKE_WIDTH = {"mlp": 32, "cnn": 8}  # the CNN only with --smoke-test --models cnn


class _FlatView(nn.Module):
    """Presents a flat-input regtune model to torchattacks as an image model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.flatten(1))


def run_config(arch: str, method: str, seed: int, *, smoke: bool) -> dict[str, Any]:
    """The nested training config of one (model, method, seed) cell."""
    cfg = copy.deepcopy(BASE_CONFIGS[arch])
    cfg["training"]["seed"] = seed
    if smoke:
        cfg["training"]["epochs"] = SMOKE_EPOCHS
        cfg["model"]["width"] = SMOKE_WIDTH[arch]
    cfg["penalties"] = {"adversarial": dict(METHODS[method])}
    return cfg


def independent_robust(
    model: nn.Module, x: Tensor, y: Tensor, *, seed: int, smoke: bool
) -> dict[str, float]:
    """Robust accuracy under torchattacks (see module docstring); model in eval mode."""
    import torchattacks

    net = _FlatView(model).eval()
    images = x.view(-1, *IMAGE_SHAPE)
    out: dict[str, float] = {}
    started = time.perf_counter()
    if smoke:
        torch.manual_seed(seed)
        adv = torchattacks.PGD(net, eps=EPS, alpha=PGD_ALPHA, steps=SMOKE_PGD_STEPS)(images, y)
        with torch.no_grad():
            alive = net(adv).argmax(1) == y
        out["robust_pgd"] = float(alive.float().mean())
    else:
        aa = torchattacks.AutoAttack(
            net, norm="Linf", eps=EPS, version="standard", n_classes=N_CLASSES, seed=seed
        )
        adv = aa(images, y)
        with torch.no_grad():
            alive_aa = net(adv).argmax(1) == y
        alive_pgd = torch.ones_like(alive_aa)
        pgd = torchattacks.PGD(net, eps=EPS, alpha=PGD_ALPHA, steps=PGD_STEPS, random_start=True)
        for restart in range(PGD_RESTARTS):
            torch.manual_seed(seed * 1000 + restart)  # PGD's random start uses the global RNG
            adv = pgd(images, y)
            with torch.no_grad():
                alive_pgd &= net(adv).argmax(1) == y
        alive = alive_aa & alive_pgd
        out["robust_autoattack"] = float(alive_aa.float().mean())
        out["robust_pgd50x5"] = float(alive_pgd.float().mean())
    out["robust"] = float(alive.float().mean())
    out["attack_time_s"] = time.perf_counter() - started
    return out


def run_cell(arch: str, method: str, seed: int, ds: Dataset, *, smoke: bool) -> dict[str, Any]:
    """Train one cell, score clean and robust test accuracy, time the training."""
    result = train(run_config(arch, method, seed, smoke=smoke), dataset=ds)
    epoch_s = [row["train_time_s"] for row in result.history]
    x, y = ds.test.x, ds.test.y
    if smoke:
        x, y = x[:SMOKE_TEST_ROWS], y[:SMOKE_TEST_ROWS]
    model = result.model.eval()
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    return {
        "seed": seed,
        "val_acc": result.history[-1]["val_acc"],
        "test_acc": clean,
        "train_time_s": sum(epoch_s),
        "median_epoch_s": statistics.median(epoch_s),
        **independent_robust(model, x, y, seed=seed, smoke=smoke),
    }


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(
    arch: str, method: str, cells: list[dict[str, Any]], clean_cells: list[dict[str, Any]]
) -> dict[str, Any]:
    """Mean/sd and worst seed over seeds, the cost ratio vs clean and the verdict
    vs issue 2's targets: judged on the mean over seeds, with whether the worst
    seed met it too (the rule: report the mean and the worst case)."""
    acc, acc_sd = _mean_sd([c["test_acc"] for c in cells])
    rob, rob_sd = _mean_sd([c["robust"] for c in cells])
    acc_min = min(c["test_acc"] for c in cells)
    rob_min = min(c["robust"] for c in cells)
    med = statistics.fmean(c["median_epoch_s"] for c in cells)
    clean_med = statistics.fmean(c["median_epoch_s"] for c in clean_cells)
    cost = med / clean_med
    total_cost = statistics.fmean(c["train_time_s"] for c in cells) / statistics.fmean(
        c["train_time_s"] for c in clean_cells
    )
    checks: list[str] = []
    ok = worst_ok = True
    if method == "clean" and arch == "mlp":
        ok, worst_ok = acc >= TARGET_CLEAN_MLP, acc_min >= TARGET_CLEAN_MLP
        checks.append(f"clean acc >= {TARGET_CLEAN_MLP}")
    elif method == "fgsm_rs":
        ok = rob >= TARGET_ROBUST[arch] and cost <= MAX_FGSM_COST
        worst_ok = rob_min >= TARGET_ROBUST[arch] and cost <= MAX_FGSM_COST
        checks.append(f"robust >= {TARGET_ROBUST[arch]}, cost <= {MAX_FGSM_COST}x")
    if checks:
        worst = "met" if worst_ok else "MISSED"
        verdict = f"{'PASS' if ok else 'FAIL'} on the mean ({checks[0]}); worst seed: {worst}"
    else:
        verdict = "reference"
    return {
        "model": arch,
        "method": method,
        "test_acc_mean": acc,
        "test_acc_sd": acc_sd,
        "test_acc_min_seed": acc_min,
        "robust_mean": rob,
        "robust_sd": rob_sd,
        "robust_min_seed": rob_min,
        "train_time_s_mean": statistics.fmean(c["train_time_s"] for c in cells),
        "cost_vs_clean_median_epoch": cost,
        "cost_vs_clean_total": total_cost,
        "verdict": verdict,
        "passed": ok if checks else None,
        "passed_worst_seed": worst_ok if checks else None,
    }


#: Columns of the table (:func:`table_rows`).
HEADERS = (
    "model",
    "method",
    "clean test acc (mean ± sd)",
    "worst seed",
    "robust acc (mean ± sd)",
    "worst seed",
    "train time s",
    "cost vs clean",
    "vs target",
)


def table_rows(summary: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """One table row per :func:`summarize` result."""
    return [
        [
            s["model"],
            s["method"],
            f"{s['test_acc_mean']:.4f} ± {s['test_acc_sd']:.4f}",
            f"{s['test_acc_min_seed']:.4f}",
            f"{s['robust_mean']:.4f} ± {s['robust_sd']:.4f}",
            f"{s['robust_min_seed']:.4f}",
            s["train_time_s_mean"],
            f"{s['cost_vs_clean_median_epoch']:.2f}x",
            s["verdict"],
        ]
        for s in summary
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 when a target is missed (full run only)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", help="tiny sizes, < 60 s")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--models", nargs="+", default=None, choices=BASE_CONFIGS, help="default: all (smoke: mlp)"
    )
    args = parser.parse_args(argv)
    smoke: bool = args.smoke_test
    if args.models is None:
        # The CNN cells take most of a smoke run and exercise no other code.
        args.models = ["mlp"] if smoke else list(BASE_CONFIGS)
    seeds = args.seeds[:1] if smoke else args.seeds
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    ds = load_dataset("digits")

    cells: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for arch in args.models:
        cells[arch] = {m: [] for m in METHODS}
        # Seed-major order: each seed's four methods run back to back, so a slow
        # spell of the shared machine hits every method, not one.
        for seed in seeds:
            for method in METHODS:
                cell = run_cell(arch, method, seed, ds, smoke=smoke)
                cells[arch][method].append(cell)
                print(
                    f"[{time.perf_counter() - started:7.1f}s] {arch:3s} {method:7s} seed {seed}: "
                    f"test acc {cell['test_acc']:.4f}  robust {cell['robust']:.4f}  "
                    f"train {cell['train_time_s']:.2f}s  attack {cell['attack_time_s']:.1f}s",
                    flush=True,
                )

    summary = [
        summarize(arch, method, cells[arch][method], cells[arch]["clean"])
        for arch in cells
        for method in METHODS
    ]
    attack = (
        f"torchattacks PGD-{SMOKE_PGD_STEPS} (smoke test; not the real evaluation)"
        if smoke
        else (
            f"torchattacks AutoAttack (Linf, eps={EPS}, standard) AND PGD-{PGD_STEPS} x "
            f"{PGD_RESTARTS} restarts (alpha={PGD_ALPHA}); robust = survives both"
        )
    )
    n_test = SMOKE_TEST_ROWS if smoke else ds.test.x.shape[0]
    table = "\n".join(
        [
            f"# Digits accuracy and robustness (eps = {EPS} L-inf, pixels in [0, 1])",
            "",
            f"Seeds {seeds}; digits test split ({n_test} images); independent attack: {attack}.",
            "Configs chosen on the validation split only. Train time: sum of optimizer-step "
            "time per run (mean over seeds); cost vs clean: ratio of median epoch times "
            f"(same model, same epochs; torch threads = {args.threads}). Targets are "
            "judged on the mean over seeds; *worst seed* is the lowest seed's accuracy, "
            "and the verdict says whether that seed met the target too.",
            "",
            markdown_table(HEADERS, table_rows(summary)),
            "",
            ISSUE_REFERENCE,
        ]
    )
    payload = {
        "eps": EPS,
        "seeds": seeds,
        "attack": attack,
        "n_test": n_test,
        "configs": {
            arch: {m: run_config(arch, m, 0, smoke=smoke) for m in METHODS} for arch in cells
        },
        "targets": {
            "clean_mlp": TARGET_CLEAN_MLP,
            "robust": TARGET_ROBUST,
            "max_fgsm_cost": MAX_FGSM_COST,
        },
        "summary": summary,
        "cells": cells,
        "wall_s": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
    }
    path = write_results(NAME, payload, table, smoke=smoke)
    print(table)
    print(f"wrote {path} in {payload['wall_s']:.1f}s")
    failed = [s for s in summary if s["passed"] is False]
    return 1 if failed and not smoke else 0


if __name__ == "__main__":
    raise SystemExit(main())
