"""Training-loop throughput: regtune's Trainer vs a bare hand-written torch loop.

Same model, data, batch size and optimizer. The bare loop is the fastest
honest thing a user would write: tensors in memory, one ``randperm`` per
epoch, forward / cross-entropy / backward / step, nothing else. regtune's
epoch additionally evaluates the validation split (loss, accuracy, ECE,
Brier, DP/EO gaps), sparsity and model size, which is what "per-epoch
metrics" costs. ``robust_every=0``: the PGD robust-accuracy estimate runs
only every k epochs and is measured separately (its own row).

Epochs of the two loops are interleaved (bare, regtune, bare, ...) so load
from other processes hits both alike; the ratio of median epoch times is
reported. Also: FGSM-RS epoch cost relative to a clean regtune epoch, and
peak resident memory.

    python -m benchmarks.trainables_speed [--smoke-test]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import markdown_table, peak_rss_mb, write_results
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.loop import Trainer
from regtune.trainables.models import build_model

#: (dataset, model config, batch size) cases; adult is the realistic tabular size.
CASES: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("adult", {"arch": "mlp", "width": 128, "depth": 2}, 256),
    ("digits", {"arch": "mlp", "width": 256, "depth": 2}, 128),
    ("digits", {"arch": "cnn", "width": 128}, 128),
)
#: --smoke-test: the smallest case, two timed epochs, one torch thread (it
#: checks that the benchmark runs, inside `make test`; its numbers mean nothing).
SMOKE_CASES: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("digits", {"arch": "mlp", "width": 32, "depth": 1}, 256),
)
SMOKE_EPOCHS = 2
TARGET_RATIO = 0.9
#: How far one run's ratio can be trusted (measured 2026-12-03, quiet machine).
SPREAD = (
    "Run-to-run spread: the adult case's epochs take about 0.25 s, and one run's ratio "
    "moves by several points. Four back-to-back measurements of it on 2026-12-03 (15 "
    "epochs each, load under 1.5): the current code 0.915 and 0.986, the code of "
    "2026-11-25 (commit 04ee840; the table first read 0.948 that day) 0.883 and 0.838. "
    "A FAIL on the adult row alone is within that spread, not a regression."
)
TARGET_FGSM_COST = 2.0


def _config(name: str, model: dict[str, Any], batch: int, **penalties: Any) -> dict[str, Any]:
    return {
        "dataset": name,
        "model": model,
        "training": {"epochs": 10_000, "batch_size": batch, "lr": 1e-3, "robust_every": 0},
        "penalties": penalties,
    }


class _BareLoop:
    """The hand-written baseline."""

    def __init__(self, ds: Dataset, model_cfg: dict[str, Any], batch: int) -> None:
        from regtune.trainables.config import ModelConfig

        torch.manual_seed(0)
        self.model = build_model(
            ModelConfig(**model_cfg), input_shape=ds.input_shape, n_classes=ds.n_classes
        )
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.0)
        self.x, self.y, self.batch = ds.train.x, ds.train.y, batch

    def epoch(self) -> None:
        self.model.train()
        perm = torch.randperm(self.x.shape[0])
        for start in range(0, self.x.shape[0], self.batch):
            idx = perm[start : start + self.batch]
            loss = F.cross_entropy(self.model(self.x[idx]), self.y[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name: str, model: dict[str, Any], batch: int, epochs: int) -> dict[str, Any]:
    """Median epoch times of the bare loop, regtune clean and regtune FGSM-RS."""
    ds = load_dataset(name)
    bare = _BareLoop(ds, model, batch)
    clean = Trainer(_config(name, model, batch), dataset=ds)
    fgsm = Trainer(
        _config(name, model, batch, adversarial={"method": "fgsm_rs", "eps": 0.1}), dataset=ds
    )
    robust = Trainer(
        {**_config(name, model, batch), "training": {"epochs": 10_000, "batch_size": batch}},
        dataset=ds,
    )
    # One warm-up epoch each (allocator, thread pools).
    bare.epoch(), clean.run_epoch(), fgsm.run_epoch()
    t_bare, t_clean, t_fgsm = [], [], []
    for _ in range(epochs):
        t_bare.append(_timed(bare.epoch))
        t_clean.append(_timed(clean.run_epoch))
        t_fgsm.append(_timed(fgsm.run_epoch))
    n = ds.train.x.shape[0]
    robust.run_epoch()
    t_robust = _timed(lambda: robust.robust_accuracy("val"))
    med_bare, med_clean, med_fgsm = (statistics.median(t) for t in (t_bare, t_clean, t_fgsm))
    return {
        "dataset": name,
        "model": model,
        "batch_size": batch,
        "train_rows": n,
        "epochs_timed": epochs,
        "bare_epoch_s": med_bare,
        "regtune_epoch_s": med_clean,
        "fgsm_rs_epoch_s": med_fgsm,
        "robust_eval_s": t_robust,
        "bare_samples_per_s": n / med_bare,
        "regtune_samples_per_s": n / med_clean,
        "throughput_ratio": med_bare / med_clean,
        "fgsm_rs_cost": med_fgsm / med_clean,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run every case; write JSON and the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke-test", action="store_true", help="2 epochs, one small case")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's (smoke: 1)")
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = 1 if args.smoke_test else torch.get_num_threads()
    torch.set_num_threads(args.threads)
    cases = SMOKE_CASES if args.smoke_test else CASES
    epochs = SMOKE_EPOCHS if args.smoke_test else args.epochs
    load_start = os.getloadavg()[0]
    results = []
    for name, model, batch in cases:
        print(f"[speed] {name} {model['arch']} batch {batch}: {epochs} interleaved epochs")
        row = measure(name, model, batch, epochs)
        print(
            f"  bare {row['bare_samples_per_s']:.0f}/s"
            f"  regtune {row['regtune_samples_per_s']:.0f}/s"
            f"  ratio {row['throughput_ratio']:.3f}  fgsm-rs cost {row['fgsm_rs_cost']:.2f}x"
        )
        results.append(row)
    rows = [
        [
            r["dataset"],
            r["model"]["arch"],
            r["batch_size"],
            round(r["bare_samples_per_s"]),
            round(r["regtune_samples_per_s"]),
            r["throughput_ratio"],
            "pass" if r["throughput_ratio"] >= TARGET_RATIO else "FAIL",
            r["fgsm_rs_cost"],
            "pass" if r["fgsm_rs_cost"] <= TARGET_FGSM_COST else "FAIL",
            r["robust_eval_s"],
        ]
        for r in results
    ]
    peak = peak_rss_mb()
    load_end = os.getloadavg()[0]
    table = markdown_table(
        [
            "dataset",
            "model",
            "batch",
            "bare loop samples/s",
            "regtune samples/s",
            "ratio (>= 0.9)",
            "",
            "FGSM-RS cost vs clean (<= 2x)",
            "",
            "robust_acc eval s",
        ],
        rows,
    )
    table += (
        f"\n\nMedian of {epochs} interleaved epochs per loop; torch threads: {args.threads}; "
        f"1-minute load average {load_start:.1f} at the start, {load_end:.1f} at the end "
        f"(on {os.cpu_count()} CPUs, shared with other work). "
        f"Peak resident memory of the benchmark process: {peak:.0f} MiB.\n"
    )
    if not args.smoke_test:
        table += f"\n{SPREAD}\n"
    write_results(
        "trainables_speed",
        {
            "cases": results,
            "peak_rss_mb": peak,
            "threads": args.threads,
            "epochs": epochs,
            "load_average_1min": {"start": load_start, "end": load_end},
        },
        table,
        smoke=args.smoke_test,
    )
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
