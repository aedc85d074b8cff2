"""Fused cohorts: K members trained as one batched model vs one after another.

The members are drawn like the sweep benchmark's space (learning rate, L2,
dropout; each its own seed) at one width per case, so they fuse into one
cohort. Two ways to train the same K configurations, in one process, one
torch thread, CPU:

- ``fused``: :func:`regtune.trainables.cohort.make_cohort` (a
  :class:`~regtune.trainables.cohort_fused.FusedCohort`), every epoch until
  every member is done;
- ``sequential``: one :class:`~regtune.trainables.loop.Trainer` per member,
  one after another (what a one-worker sweep does).

Both include building the models (and, for the cohort, its members'
schedules) and the per-epoch validation metrics. Runs are interleaved
(fused, sequential, fused, ...) and the median wall time is reported, with
the throughput in member-epochs per second, their ratio (of wall time and of
this process's CPU time, which load from other processes disturbs less), and
the largest
difference of a member's last-epoch ``val_loss`` between the two (exactness).

    python -m benchmarks.cohort_speed [--smoke-test] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from benchmarks.common import markdown_table, peak_rss_mb, write_results
from regtune.trainables.cohort import make_cohort
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.loop import Trainer

#: (dataset, width, batch size, epochs, member counts K).
CASES: tuple[tuple[str, int, int, int, tuple[int, ...]], ...] = (
    ("digits", 64, 128, 5, (1, 4, 8, 16)),
    ("digits", 256, 128, 5, (4, 16)),
    ("adult", 128, 256, 1, (4, 16)),
)
#: --smoke-test: checks that the benchmark runs (its numbers mean nothing).
SMOKE_CASES: tuple[tuple[str, int, int, int, tuple[int, ...]], ...] = (
    ("digits", 16, 256, 1, (2,)),
)


def member_configs(dataset: str, width: int, batch: int, epochs: int, k: int) -> dict[str, Any]:
    """K configurations from the sweep benchmark's space (seeded)."""
    rng = np.random.default_rng(0)
    configs = {}
    for i in range(k):
        configs[f"m{i}"] = {
            "dataset": dataset,
            "model": {"arch": "mlp", "width": width, "depth": 2, "dropout": rng.uniform(0, 0.5)},
            "training": {
                "epochs": epochs,
                "batch_size": batch,
                "lr": float(10 ** rng.uniform(-4, -1)),
                "seed": i,
                "robust_every": 0,
            },
            "penalties": {"l2": float(10 ** rng.uniform(-6, -2))},
        }
    return configs


def run_fused(configs: dict[str, Any], data: Dataset) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU seconds of the cohort, and each member's last val_loss."""
    start, cpu = time.perf_counter(), time.process_time()
    cohort = make_cohort(configs, dataset=data)
    last: dict[str, float] = {}
    while rows := cohort.run_epoch():
        last.update({mid: row["val_loss"] for mid, row in rows.items()})
    return time.perf_counter() - start, time.process_time() - cpu, last


def run_sequential(configs: dict[str, Any], data: Dataset) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU seconds of one Trainer per member, one after another."""
    start, cpu = time.perf_counter(), time.process_time()
    last: dict[str, float] = {}
    for mid, cfg in configs.items():
        trainer = Trainer(cfg, dataset=data)
        while not trainer.should_stop:
            last[mid] = trainer.run_epoch()["val_loss"]
    return time.perf_counter() - start, time.process_time() - cpu, last


def measure(
    dataset: str, width: int, batch: int, epochs: int, k: int, repeats: int, data: Dataset
) -> dict[str, Any]:
    """Interleaved repeats of both ways for one case and one K."""
    configs = member_configs(dataset, width, batch, epochs, k)
    times: dict[str, list[float]] = {"fused": [], "sequential": []}
    cpu: dict[str, list[float]] = {"fused": [], "sequential": []}
    worst = 0.0
    for _ in range(repeats):
        fused_s, fused_cpu, fused_last = run_fused(configs, data)
        seq_s, seq_cpu, seq_last = run_sequential(configs, data)
        times["fused"].append(fused_s)
        times["sequential"].append(seq_s)
        cpu["fused"].append(fused_cpu)
        cpu["sequential"].append(seq_cpu)
        for mid, value in seq_last.items():
            worst = max(worst, abs(fused_last[mid] - value) / max(abs(value), 1e-12))
    fused, seq = statistics.median(times["fused"]), statistics.median(times["sequential"])
    fused_cpu_s, seq_cpu_s = statistics.median(cpu["fused"]), statistics.median(cpu["sequential"])
    return {
        "dataset": dataset,
        "width": width,
        "batch_size": batch,
        "epochs": epochs,
        "k": k,
        "fused_s": fused,
        "sequential_s": seq,
        "fused_member_epochs_per_s": k * epochs / fused,
        "sequential_member_epochs_per_s": k * epochs / seq,
        "speedup": seq / fused,
        "fused_cpu_s": fused_cpu_s,
        "sequential_cpu_s": seq_cpu_s,
        "speedup_cpu": seq_cpu_s / fused_cpu_s,
        "max_rel_val_loss_diff": worst,
        "runs": times,
        "runs_cpu": cpu,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the cases and write ``benchmarks/results/cohort_speed.{json,md}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cases = SMOKE_CASES if args.smoke_test else CASES
    repeats = 1 if args.smoke_test else args.repeats
    loaded: dict[str, Dataset] = {}
    results = []
    for dataset, width, batch, epochs, ks in cases:
        if dataset not in loaded:
            loaded[dataset] = load_dataset(dataset)
            # Untimed warm-up: the first optimizer pulls in torch._dynamo (seconds).
            warm = member_configs(dataset, width, batch, 1, 2)
            run_fused(warm, loaded[dataset])
            run_sequential(warm, loaded[dataset])
        data = loaded[dataset]
        for k in ks:
            row = measure(dataset, width, batch, epochs, k, repeats, data)
            results.append(row)
            print(
                f"{dataset} width {width} K={k}: fused {row['fused_s']:.2f}s, "
                f"sequential {row['sequential_s']:.2f}s, x{row['speedup']:.2f} "
                f"(CPU time x{row['speedup_cpu']:.2f})",
                flush=True,
            )
    table = markdown_table(
        [
            "dataset",
            "width",
            "K",
            "epochs",
            "fused s",
            "one after another s",
            "speed-up",
            "speed-up (CPU time)",
            "member-epochs/s fused",
            "max rel. val_loss diff",
        ],
        [
            [
                r["dataset"],
                r["width"],
                r["k"],
                r["epochs"],
                r["fused_s"],
                r["sequential_s"],
                r["speedup"],
                r["speedup_cpu"],
                r["fused_member_epochs_per_s"],
                r["max_rel_val_loss_diff"],
            ]
            for r in results
        ],
    )
    note = (
        f"\n\nOne torch thread, CPU, median of {repeats} interleaved runs; "
        "building the models is included; K=1 is a plain Trainer (a group of one). "
        "Timings on a shared machine under load: ratios travel, absolute times do "
        "not, and the CPU-time ratio (this process's CPU seconds) is the one load "
        "disturbs least."
    )
    write_results(
        "cohort_speed",
        {"cases": results, "repeats": repeats, "peak_rss_mb": peak_rss_mb()},
        table + note,
        smoke=args.smoke_test,
    )
    print(table)


if __name__ == "__main__":
    main()
