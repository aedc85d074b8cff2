"""Fused cohorts: K members trained as one batched model vs one after another.

The members are drawn like the sweep benchmark's space (learning rate, L2,
dropout; each its own seed) at one width per case, so they fuse into one
cohort (digits and Adult MLPs, digits CNN). Two ways to train the same K
configurations, in one process, one torch thread, CPU:

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
the largest difference of a member's last-epoch ``val_loss`` between the two
(exactness).

Three more measurements:

- mixed widths (32/64/128/256 as in the sweep benchmark, then 16-64 and
  8-32; 4 members each): the cost rule's grouping (``make_cohort``), all
  padded into one batch, one group per width, and one after another;
- the cost rule's constant (``cohort_pad.GROUP_OVERHEAD_MACS``): fused epoch
  CPU times over widths and K, fitted to ``a + K * (c + b * macs)``;
- memory per member: peak RSS growth in a fresh process per K.

    python -m benchmarks.cohort_speed [--smoke-test] [--repeats N] [--fit-only] [--report-only]
        [--only fit|mlp|cnn|mixed|memory ...]   # rerun parts, keep the rest on file
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import markdown_table, peak_rss_mb, results_dir, write_results
from regtune.trainables.cohort import Cohort, fusable, make_cohort
from regtune.trainables.cohort_fused import FusedCohort
from regtune.trainables.cohort_pad import GROUP_OVERHEAD_MACS, mlp_macs
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.loop import Trainer

Case = tuple[str, str, int, int, int, tuple[int, ...]]
#: (arch, dataset, width, batch size, epochs, member counts K). K=64 runs once
#: (:data:`ONCE_FROM_K`): its sequential reference alone is minutes of CPU.
CASES: tuple[Case, ...] = (
    ("mlp", "digits", 64, 128, 5, (1, 4, 16, 64)),
    ("mlp", "digits", 256, 128, 5, (4, 16)),
    ("mlp", "adult", 128, 256, 1, (1, 4, 16, 64)),
    ("cnn", "digits", 64, 128, 1, (1, 4, 16, 64)),
)
#: --smoke-test: checks that the benchmark runs (its numbers mean nothing).
SMOKE_CASES: tuple[Case, ...] = (
    ("mlp", "digits", 16, 256, 1, (2,)),
    ("cnn", "digits", 8, 256, 1, (2,)),
)
#: Cases with at least this many members run once, whatever ``--repeats``.
ONCE_FROM_K = 64
#: The mixed-width cases, 4 members per width: the sweep benchmark's width
#: choices, then narrower sets where a group's fixed cost weighs more.
MIXED_WIDTHS: tuple[tuple[int, ...], ...] = ((32, 64, 128, 256), (16, 32, 48, 64), (8, 16, 24, 32))
MIXED_PER_WIDTH = 4
#: What ``--only`` can rerun (the rest is kept from the results on file).
PARTS = ("fit", "mlp", "cnn", "mixed", "memory")
#: Memory: fused cohorts of these sizes, each in a fresh process (peak RSS).
MEMORY_KS: tuple[int, ...] = (1, 4, 16, 64)
#: The cost-rule fit: fused epochs at these widths and member counts.
FIT_WIDTHS: tuple[int, ...] = (32, 64, 128, 256)
FIT_KS: tuple[int, ...] = (2, 8, 16)


def member_configs(
    dataset: str, width: int | Sequence[int], batch: int, epochs: int, k: int, arch: str = "mlp"
) -> dict[str, Any]:
    """K configurations from the sweep benchmark's space (seeded); ``width``
    may be a list, which the members take in turn."""
    rng = np.random.default_rng(0)
    widths = [width] if isinstance(width, int) else list(width)
    configs = {}
    for i in range(k):
        configs[f"m{i}"] = {
            "dataset": dataset,
            "model": {
                "arch": arch,
                "width": widths[i % len(widths)],
                "depth": 2,
                "dropout": rng.uniform(0, 0.5),
            },
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


def run_fused(
    configs: dict[str, Any], data: Dataset, grouping: str = "padded"
) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU seconds of the cohort, and each member's last val_loss.

    ``grouping``: ``padded`` is :func:`make_cohort` (widths padded together
    where its cost rule says so), ``per_width`` fuses only equal widths,
    ``one_group`` pads every member to the widest in one batch.
    """
    start, cpu = time.perf_counter(), time.process_time()
    cohort: Cohort
    if grouping == "one_group":
        cohort = FusedCohort(configs, dataset=data)
    else:
        # CNN members fuse on a CPU only when asked (make_cohort's default is
        # not to, as this benchmark's CNN rows measured).
        cohort = make_cohort(configs, dataset=data, pad=grouping == "padded", cnn_on_cpu=True)
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


def measure(case: Case, k: int, repeats: int, data: Dataset) -> dict[str, Any]:
    """Interleaved repeats of both ways for one case and one K."""
    arch, dataset, width, batch, epochs, _ = case
    configs = member_configs(dataset, width, batch, epochs, k, arch)
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
        "arch": arch,
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


GROUPINGS = ("padded", "one_group", "per_width")


def measure_mixed(
    dataset: str, widths: Sequence[int], per_width: int, epochs: int, repeats: int, data: Dataset
) -> dict[str, Any]:
    """Mixed widths: the cost rule's grouping, everything padded into one
    batch, one group per width, and one Trainer after another (interleaved)."""
    k = len(widths) * per_width
    configs = member_configs(dataset, widths, 128, epochs, k)
    cpu: dict[str, list[float]] = {g: [] for g in (*GROUPINGS, "sequential")}
    wall: dict[str, list[float]] = {g: [] for g in (*GROUPINGS, "sequential")}
    worst = 0.0
    for _ in range(repeats):
        seq_s, seq_cpu, seq_last = run_sequential(configs, data)
        wall["sequential"].append(seq_s)
        cpu["sequential"].append(seq_cpu)
        for grouping in GROUPINGS:
            fused_s, fused_cpu, last = run_fused(configs, data, grouping)
            wall[grouping].append(fused_s)
            cpu[grouping].append(fused_cpu)
            for mid, value in seq_last.items():
                worst = max(worst, abs(last[mid] - value) / max(abs(value), 1e-12))
    width_of = {mid: cfg["model"]["width"] for mid, cfg in configs.items()}
    groups = fusable(configs, dataset=data)
    return {
        "dataset": dataset,
        "widths": list(widths),
        "per_width": per_width,
        "epochs": epochs,
        "k": k,
        "padded_groups": [sorted({width_of[m] for m in g}) for g in groups],
        "cpu_s": {g: statistics.median(v) for g, v in cpu.items()},
        "wall_s": {g: statistics.median(v) for g, v in wall.items()},
        "max_rel_val_loss_diff": worst,
        "runs_cpu": cpu,
        "runs": wall,
    }


def fit_overhead(
    dataset: str, widths: Sequence[int], ks: Sequence[int], repeats: int, data: Dataset
) -> dict[str, Any]:
    """Fit a fused epoch's CPU time to ``a + K * (c + b * macs(width))``.

    ``a`` is what one more group costs per epoch, ``b`` the cost of one
    multiply-add per example; ``a / b`` is the cost rule's
    ``GROUP_OVERHEAD_MACS`` (in the unit of :func:`mlp_macs`). Each point is
    the median over ``repeats`` of the CPU seconds of 2 epochs (after one
    untimed epoch), divided by 2.
    """
    io = int(np.prod(data.input_shape)) + data.n_classes
    points = []
    for width in widths:
        for k in ks:
            configs = member_configs(dataset, width, 128, 3, k)
            samples = []
            for _ in range(repeats):
                cohort = FusedCohort(configs, dataset=data)
                cohort.run_epoch()
                cpu = time.process_time()
                cohort.run_epoch()
                cohort.run_epoch()
                samples.append((time.process_time() - cpu) / 2)
            points.append((width, k, statistics.median(samples)))
    design = np.array([[1.0, k * mlp_macs(w, 2, io), k] for w, k, _ in points])
    seconds = np.array([t for _, _, t in points])
    (a, b, c), *_ = np.linalg.lstsq(design, seconds, rcond=None)
    return {
        "dataset": dataset,
        "io_features": io,
        "points": [{"width": w, "k": k, "epoch_cpu_s": t} for w, k, t in points],
        "group_s": float(a),
        "mac_s": float(b),
        "member_s": float(c),
        "overhead_macs": float(a / b) if b > 0 else float("nan"),
    }


def _status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process from /proc, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_case(dataset: str, width: int, batch: int, k: int) -> dict[str, Any]:
    """Peak RSS growth of this (fresh) process while a cohort of K is built and
    trains one epoch, over its RSS once the dataset is loaded.

    The kernel's peak (``VmHWM``) is reset to the current RSS first (writing
    ``5`` to ``/proc/self/clear_refs``), so the dataset's loading peak does
    not hide the cohort's.
    """
    torch.set_num_threads(1)
    data = load_dataset(dataset)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mb("VmRSS")
    cohort = make_cohort(member_configs(dataset, width, batch, 1, k), dataset=data)
    cohort.run_epoch()
    return {"k": k, "growth_mb": _status_mb("VmHWM") - before, "rss_before_mb": before}


def _memory_case_forked(dataset: str, width: int, batch: int, k: int) -> dict[str, Any]:
    """:func:`memory_case` in a forked child of this process (``--smoke-test``,
    before this process trained anything: a fresh interpreter would import torch again).

    Raises:
        RuntimeError: the child failed (its traceback is on stderr).
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one case, its JSON down the pipe, exit without cleanup
        code = 1
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "w") as out:
                out.write(json.dumps(memory_case(dataset, width, batch, k)))
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as replies:
        text = replies.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not text:
        raise RuntimeError(f"memory case K={k} failed in its forked child (see stderr)")
    return dict(json.loads(text))


def measure_memory(
    dataset: str, width: int, batch: int, ks: Sequence[int], *, forked: bool = False
) -> dict[str, Any]:
    """Peak RSS growth per K (:func:`memory_case`), each in a fresh process
    (``forked``: a forked child of this one, for ``--smoke-test``);
    per member: the growth beyond the smallest K's, divided by the extra members."""
    runs = {}
    for k in ks:
        if forked:
            runs[k] = _memory_case_forked(dataset, width, batch, k)["growth_mb"]
            continue
        args = ["--memory-case", dataset, str(width), str(batch), str(k)]
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.cohort_speed", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"memory case K={k} failed:\n{proc.stderr[-3000:]}")
        runs[k] = json.loads(lines[-1])["growth_mb"]
    base = runs[min(ks)]
    return {
        "dataset": dataset,
        "width": width,
        "peak_growth_mb": {str(k): v for k, v in runs.items()},
        "per_member_mb": {
            str(k): (v - base) / (k - min(ks)) for k, v in runs.items() if k > min(ks)
        },
    }


def _speed_table(results: list[dict[str, Any]]) -> str:
    return markdown_table(
        [
            "arch",
            "dataset",
            "width",
            "K",
            "epochs",
            "runs",
            "fused s",
            "one after another s",
            "speed-up",
            "speed-up (CPU time)",
            "member-epochs/s fused",
            "max rel. val_loss diff",
        ],
        [
            [
                r.get("arch", "mlp"),
                r["dataset"],
                r["width"],
                r["k"],
                r["epochs"],
                len(r["runs"]["fused"]),
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


def _mixed_table(mixed: dict[str, Any]) -> str:
    head = (
        f"\n\nWidths {'/'.join(str(w) for w in mixed['widths'])}, {mixed['per_width']} "
        f"members each ({mixed['k']}), {mixed['epochs']} epochs; largest relative val_loss "
        f"difference to the solo runs {mixed['max_rel_val_loss_diff']:.2g}:\n\n"
    )
    seq = mixed["cpu_s"]["sequential"]
    per_width = mixed["cpu_s"]["per_width"]
    groups = " / ".join("+".join(str(w) for w in g) for g in mixed["padded_groups"])
    names = {
        "padded": f"cost rule (groups {groups})",
        "one_group": "all padded to the widest, one batch",
        "per_width": "one group per width (no padding)",
        "sequential": "one Trainer after another",
    }
    return head + markdown_table(
        ["grouping", "CPU s", "wall s", "CPU vs one per width", "CPU speed-up vs sequential"],
        [
            [
                names[g],
                mixed["cpu_s"][g],
                mixed["wall_s"][g],
                mixed["cpu_s"][g] / per_width,
                seq / mixed["cpu_s"][g],
            ]
            for g in (*GROUPINGS, "sequential")
        ],
    )


def _memory_table(memory: dict[str, Any]) -> str:
    return markdown_table(
        ["K", "peak RSS growth MiB", "per extra member MiB"],
        [
            [int(k), v, memory["per_member_mb"].get(k, float("nan"))]
            for k, v in memory["peak_growth_mb"].items()
        ],
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the cases and write ``benchmarks/results/cohort_speed.{json,md}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--fit-only", action="store_true", help="print the cost-rule fit, write nothing"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the markdown from the JSON on file; measure nothing",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="rerun only this part (repeatable), keeping every other result on file",
    )
    parser.add_argument(
        "--memory-case",
        nargs=4,
        metavar=("DATASET", "WIDTH", "BATCH", "K"),
        help="internal: one memory measurement in this fresh process (prints JSON)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.memory_case:
        dataset, width, batch, k = args.memory_case
        print(json.dumps(memory_case(dataset, int(width), int(batch), int(k))))
        return
    smoke = args.smoke_test
    if args.report_only:
        path = results_dir() / f"cohort_speed{'-smoke' if smoke else ''}.json"
        path.with_suffix(".md").write_text(_render(json.loads(path.read_text())).rstrip() + "\n")
        print(f"wrote {path.with_suffix('.md')}")
        return
    repeats = 1 if smoke else args.repeats
    parts = set(args.only or PARTS)
    if args.fit_only:
        parts = {"fit"}
    previous: dict[str, Any] = {}
    if parts != set(PARTS) and not args.fit_only:
        path = results_dir() / f"cohort_speed{'-smoke' if smoke else ''}.json"
        if not path.exists():
            parser.error(f"--only adds to earlier results; there are none at {path}")
        previous = json.loads(path.read_text())
        repeats = int(previous.get("repeats", repeats))
    memory = previous.get("memory")
    if smoke and "memory" in parts:
        # First, in forked children of this process while it has trained nothing
        # (with torch._dynamo, which the first optimizer step imports, loaded once here).
        importlib.import_module("torch._dynamo")
        memory = measure_memory("digits", 16, 128, (1, 2), forked=True)
        print(json.dumps(memory), flush=True)
    digits = load_dataset("digits")
    fit = previous.get("fit")
    if "fit" in parts:
        fit = fit_overhead(
            "digits",
            (16, 32) if smoke else FIT_WIDTHS,
            (1, 2) if smoke else FIT_KS,
            repeats,
            digits,
        )
        print(json.dumps({k: v for k, v in fit.items() if k != "points"}), flush=True)
    if args.fit_only:
        return
    loaded: dict[str, Dataset] = {"digits": digits}
    results = [c for c in previous.get("cases", []) if c.get("arch", "mlp") not in parts]
    warmed: set[tuple[str, str]] = set()
    for case in SMOKE_CASES if smoke else CASES:
        arch, dataset, width, batch, _, ks = case
        if arch not in parts:
            continue
        if dataset not in loaded:
            loaded[dataset] = load_dataset(dataset)
        data = loaded[dataset]
        if (arch, dataset) not in warmed:
            # Untimed warm-up: the first optimizer pulls in torch._dynamo (seconds).
            warm = member_configs(dataset, width, batch, 1, 2, arch)
            run_fused(warm, data)
            run_sequential(warm, data)
            warmed.add((arch, dataset))
        for k in ks:
            row = measure(case, k, 1 if k >= ONCE_FROM_K else repeats, data)
            results.append(row)
            print(
                f"{arch} {dataset} width {width} K={k}: fused {row['fused_s']:.2f}s, "
                f"sequential {row['sequential_s']:.2f}s, x{row['speedup']:.2f} "
                f"(CPU time x{row['speedup_cpu']:.2f})",
                flush=True,
            )
    order = {(a, d, w): i for i, (a, d, w, *_) in enumerate(CASES)}
    results.sort(key=lambda r: order.get((r.get("arch", "mlp"), r["dataset"], r["width"]), -1))
    mixed = previous.get("mixed", [])
    if "mixed" in parts:
        mixed = [
            measure_mixed(
                "digits",
                widths,
                1 if smoke else MIXED_PER_WIDTH,
                1 if smoke else 5,
                repeats,
                digits,
            )
            for widths in (((8, 16),) if smoke else MIXED_WIDTHS)
        ]
        for m in mixed:
            print(json.dumps({k: m[k] for k in ("padded_groups", "cpu_s", "wall_s")}), flush=True)
    if "memory" in parts and not smoke:
        memory = measure_memory("digits", 64, 128, MEMORY_KS)
        print(json.dumps(memory), flush=True)
    payload = {
        "cases": results,
        "repeats": repeats,
        "once_from_k": ONCE_FROM_K,
        "mixed": mixed if isinstance(mixed, list) else [mixed],
        "fit": fit,
        "memory": memory,
        "peak_rss_mb": peak_rss_mb(),
    }
    write_results("cohort_speed", payload, _render(payload), smoke=smoke)
    print(_speed_table(results))


def _render(payload: dict[str, Any]) -> str:
    """The markdown for BENCHMARKS.md from a results payload."""
    results, repeats = payload["cases"], payload["repeats"]
    mixed, fit, memory = payload["mixed"], payload["fit"], payload["memory"]
    note = (
        f"\n\nOne torch thread, CPU, median of {repeats} interleaved runs (K >= "
        f"{ONCE_FROM_K}: one run, see *runs*); building the models is included; K=1 "
        "is a plain Trainer (a group of one). Timings on a shared machine under load "
        "(other engineers' tests, `nice`d): ratios travel, absolute times do not, and "
        "the CPU-time ratio (this process's CPU seconds) is the one load disturbs least."
    )
    mixed_note = (
        f"\n\n**Mixed widths** (digits MLPs, median of {repeats} interleaved runs of each "
        "grouping; *cost rule* is what `make_cohort` does)."
    )
    fit_note = (
        f"\n\n**Cost rule** (when padding pays): a fused digits epoch's CPU time fits "
        f"{fit['group_s'] * 1e3:.3g} ms per group + K x ({fit['member_s'] * 1e3:.3g} ms + "
        f"{fit['mac_s'] * 1e9:.3g} ns x per-example multiply-adds of the widest member), "
        f"over widths {'/'.join(str(p) for p in sorted({q['width'] for q in fit['points']}))} "
        f"and K {'/'.join(str(p) for p in sorted({q['k'] for q in fit['points']}))}: one "
        f"more group costs as much as {fit['overhead_macs']:.3g} multiply-adds per example "
        f"in this run's fit (the constant the cost rule uses, "
        f"`cohort_pad.GROUP_OVERHEAD_MACS`, is {GROUP_OVERHEAD_MACS:,.0f}).\n\n"
    )
    memory_note = (
        "**Memory per member**: in a fresh process per K, digits loaded, the peak RSS "
        "(`VmHWM`, reset through `/proc/self/clear_refs` once the data is loaded) grows "
        f"this much while a cohort of K width-{memory['width']} MLP members is built and "
        "trains one epoch; per extra member = (growth - growth at K=1) / (K-1). K=1 is "
        "a plain Trainer; the growth at K=1 is mostly torch's lazily loaded modules.\n\n"
    )
    return (
        _speed_table(results)
        + note
        + mixed_note
        + "".join(_mixed_table(m) for m in mixed)
        + fit_note
        + memory_note
        + _memory_table(memory)
    )


if __name__ == "__main__":
    main()
