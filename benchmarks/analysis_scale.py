"""Analysis at scale: 10^7 epoch rows (100,000 trials x 100 epochs) in one results folder.

Writes a synthetic results directory of the store's layout (epoch parts with
the store's metadata, ``spec.json``, ``trials.parquet``), then measures, each in
a fresh process:

- ``regtune``: ``regtune analyze DIR --json`` with three objectives (val_acc,
  ece, size_bytes): path + Pareto front + hypervolume + diagnosis. Its JSON
  carries ``read_s`` and ``analyze_s``; peak RSS is the process's.
- ``pandas``: a straightforward pandas version of the same work
  (``read_parquet`` of the needed columns, ``groupby`` per trial, ``pd.cut``
  path, a pairwise numpy front on a subset: the full pairwise front is
  O(n^2) = 10^10 comparisons and is not run).
- ``optuna``: Optuna's ``_fast_non_domination_rank`` on the same per-trial points,
  next to regtune's ``non_dominated_mask`` (both timed on the same array).

Every trial's last epoch also carries the trainable's 48 reliability-bin columns
(its final report on a dataset without groups): the analysis must read them for
the best trial only (``best_read_s``), not for 10^7 rows.

Targets (issue 6): <= 2 s of analysis time, peak memory <= 2x the in-memory
size of the columns the analysis needs. ``--smoke-test`` (run by ``make test``:
it must still run end to end) uses :data:`SMOKE_SIZE` and runs the three
contenders in its own process, one after the other: its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    contender_json,
    machine_facts,
    markdown_table,
    peak_rss_mb,
    write_results,
)

NAME = "analysis_scale"
OBJECTIVES = ("val_acc", "ece:min", "size_bytes:min")
NEEDED = [
    "trial_id",
    "iteration",
    "config.penalties.l2",
    "config.model.dropout",
    "train_loss",
    "val_loss",
    "val_acc",
    "ece",
    "size_bytes",
]
ROWS_PER_PART = 1_000_000
#: --smoke-test: trials x epochs (epochs >= the diagnosis's 3, and a spike to flag).
SMOKE_SIZE = (300, 6)
#: Reliability slots of the trainable's final report (regtune.trainables.metrics, which
#: imports torch; the benchmark's writer does not need it).
RELIABILITY_SLOTS = 16

SPEC = {
    "name": "scale",
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 64, "depth": 2, "dropout": {"uniform": [0.0, 0.5]}},
    "training": {"robust_every": 0},
    "penalties": {"l2": {"loguniform": [1.0e-6, 1.0e-1]}},
    "objectives": [
        {"metric": "val_acc", "mode": "max"},
        {"metric": "ece", "mode": "min"},
        {"metric": "size_bytes", "mode": "min"},
    ],
    "searcher": {"kind": "random", "seed": 0},
    "budget": {"samples": 100, "max_epochs": 100},
}


def _final_report(rng: np.random.Generator, n: int, epochs: int) -> dict[str, Any]:
    """The trainable's reliability bins (``test_reliability.bNN.{conf,acc,count}``, 48
    columns) on the last epoch of each of ``n`` trials, null elsewhere, as a real final
    report of a dataset without groups (digits) stores them. The analysis reads them
    for the best trial only. One data buffer per stat, shared by the slots (memory)."""
    import pyarrow as pa

    from regtune.trainables.metric_names import RELIABILITY_STATS, reliability_name

    rows = n * epochs
    last = np.zeros(rows, dtype=bool)
    last[epochs - 1 :: epochs] = True
    validity = pa.py_buffer(np.packbits(last, bitorder="little"))
    draws = {
        "conf": rng.uniform(0.5, 1.0, n),
        "acc": rng.uniform(0.4, 1.0, n),
        "count": rng.integers(0, 30, n).astype(np.float64),
    }
    arrays = {}
    for stat, values in draws.items():
        data = np.zeros(rows)
        data[last] = values
        arrays[stat] = pa.Array.from_buffers(
            pa.float64(), rows, [validity, pa.py_buffer(data)], null_count=rows - n
        )
    return {
        reliability_name("test", slot, stat): arrays[stat]
        for slot in range(RELIABILITY_SLOTS)
        for stat in RELIABILITY_STATS
    }


def write_synthetic(exp: Path, trials: int, epochs: int, seed: int = 0) -> dict[str, Any]:
    """A results folder of ``trials x epochs`` rows; returns sizes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from regtune.platform.results.schema import (
        KIND_EPOCHS,
        KIND_TRIALS,
        META_EXPERIMENT,
        META_KIND,
        META_VERSION,
        SCHEMA_VERSION,
    )

    rng = np.random.default_rng(seed)
    folder = exp / "results" / "epochs"
    folder.mkdir(parents=True, exist_ok=True)
    (exp / "results" / "spec.json").write_text(json.dumps(SPEC))
    l2 = np.exp(rng.uniform(np.log(1e-6), np.log(1e-1), trials))
    dropout = rng.uniform(0.0, 0.5, trials)
    width = rng.choice([32.0, 64.0, 128.0], trials)
    ids = np.array([f"t{i:06d}" for i in range(trials)], dtype=object)
    per_part = max(1, ROWS_PER_PART // epochs)
    t = np.arange(1, epochs + 1, dtype=np.float64)
    meta = {
        META_VERSION: str(SCHEMA_VERSION).encode(),
        META_KIND: KIND_EPOCHS.encode(),
        META_EXPERIMENT: b"scale",
    }
    for part, start in enumerate(range(0, trials, per_part)):
        sl = slice(start, min(start + per_part, trials))
        n = sl.stop - sl.start
        strength = np.log10(l2[sl])[:, None]
        floor = 0.05 + 0.3 * np.clip(strength + 3, 0, None) ** 1.5  # strong l2: underfit
        train = floor + np.exp(-t[None, :] / 10) * 2.0
        overfit = np.clip(-3 - strength, 0, None) * 0.01 * t[None, :]  # weak l2: gap grows
        val = train + 0.05 + overfit + rng.normal(0, 0.01, (n, epochs))
        unstable = rng.random(n) < 0.01
        val[unstable, epochs // 2] *= 3.0
        acc = np.clip(1.0 - val / 2.5, 0, 1)
        ece = np.clip(0.02 + 0.05 * dropout[sl, None] + rng.normal(0, 0.005, (n, epochs)), 0, 1)
        size = np.repeat(width[sl, None] * 1000.0, epochs, axis=1)
        table = pa.table(
            {
                "experiment": pa.array(["scale"] * (n * epochs)),
                "trial_id": pa.array(np.repeat(ids[sl], epochs)),
                "iteration": pa.array(np.tile(np.arange(1, epochs + 1), n), pa.int64()),
                "time_total_s": pa.array(np.tile(t, n)),
                "timestamp": pa.array(1.7e9 + np.tile(t, n)),
                "config.model.dropout": pa.array(np.repeat(dropout[sl], epochs)),
                "config.penalties.l2": pa.array(np.repeat(l2[sl], epochs)),
                "config.training.seed": pa.array(np.zeros(n * epochs)),
                "train_loss": pa.array(train.ravel()),
                "val_loss": pa.array(val.ravel()),
                "val_acc": pa.array(acc.ravel()),
                "gap": pa.array((val - train).ravel()),
                "ece": pa.array(ece.ravel()),
                "brier": pa.array((ece * 2).ravel()),
                "size_bytes": pa.array(size.ravel()),
            }
        ).replace_schema_metadata(meta)
        for name, column in _final_report(rng, n, epochs).items():
            table = table.append_column(name, column)
        pq.write_table(table, folder / f"part-{part:08d}-bench.parquet")
    trial_meta = {**meta, META_KIND: KIND_TRIALS.encode()}
    pq.write_table(
        pa.table(
            {"trial_id": pa.array(ids), "status": pa.array(["finished"] * trials)}
        ).replace_schema_metadata(trial_meta),
        exp / "results" / "trials.parquet",
    )
    on_disk = sum(p.stat().st_size for p in (exp / "results").rglob("*") if p.is_file())
    return {"trials": trials, "epochs": epochs, "rows": trials * epochs, "bytes_on_disk": on_disk}


def _regtune(exp: str) -> dict[str, Any]:
    # Import everything the command imports first: the baseline is the process ready to read.
    import regtune.platform.analysis.run
    import regtune.platform.cli  # noqa: F401
    from regtune.platform.analysis.load import load_experiment

    base = peak_rss_mb()
    proc_args = ["analyze", exp, "--json"]
    for objective in OBJECTIVES:
        proc_args += ["--objective", objective]
    from typer.testing import CliRunner

    from regtune.platform.cli import app

    started = time.perf_counter()
    result = CliRunner().invoke(app, proc_args)
    wall = time.perf_counter() - started
    if result.exit_code != 0:
        raise RuntimeError(result.output[-3000:])
    data = json.loads(result.stdout)["experiments"][0]
    peak = peak_rss_mb()
    # The in-memory size of the columns the command read (its own column choice).
    from regtune.platform.analysis.load import stored_columns
    from regtune.platform.analysis.run import needed_columns
    from regtune.platform.results import read_spec

    columns = needed_columns(stored_columns(exp)[0], read_spec(exp), objectives=list(OBJECTIVES))
    frame = load_experiment(exp, columns=columns).epochs
    needed_mb = float(frame.memory_usage(deep=True).sum()) / 2**20
    return {
        "read_s": data["timings"]["read_s"],
        "analyze_s": data["timings"]["analyze_s"],
        "read_cpu_s": data["timings"]["read_cpu_s"],
        "analyze_cpu_s": data["timings"]["analyze_cpu_s"],
        "loadavg_1min_after": os.getloadavg()[0],
        "command_s": wall,
        "rss_before_mb": base,
        "peak_rss_mb": peak,
        "analysis_peak_mb": peak - base,
        "needed_columns_mb": needed_mb,
        "needed_columns": ["trial_id", "iteration", *columns],
        "best_read_s": data["timings"].get("best_read_s"),
        "best_reliability_slots": len(data["best"]["reliability"]),
        "best_reliability_ece": data["best"]["reliability_ece"],
        "n_front": data["front"]["n_front"],
        "hypervolume": data["front"]["hypervolume"],
        "diagnosis": data["diagnosis"]["counts"],
    }


def _pandas(exp: str, pairwise_subset: int) -> dict[str, Any]:
    import pandas as pd

    base = peak_rss_mb()
    started, started_cpu = time.perf_counter(), time.process_time()
    frame = pd.read_parquet(Path(exp) / "results" / "epochs", columns=NEEDED)
    read, read_cpu = time.perf_counter(), time.process_time()
    frame = frame.sort_values(["trial_id", "iteration"])
    best_rows = frame.groupby("trial_id")["val_acc"].idxmax()
    summary = frame.loc[best_rows].set_index("trial_id")
    bins = pd.cut(np.log10(summary["config.penalties.l2"]), 10)
    path = summary.groupby(bins, observed=True)[["val_acc", "val_loss", "train_loss"]].quantile(
        [0.25, 0.5, 0.75]
    )
    grouped = frame.groupby("trial_id")
    first = grouped[["train_loss", "val_loss"]].first()
    last = grouped[["train_loss", "val_loss"]].agg(lambda s: s.tail(3).mean())
    gap_ratio = (last["val_loss"] - last["train_loss"]) / last["val_loss"]
    progress = last["train_loss"] / first["train_loss"]
    labels = np.where(gap_ratio > 0.3, "overfit", np.where(progress > 0.7, "underfit", "ok"))
    points = np.column_stack([-summary["val_acc"], summary["ece"], summary["size_bytes"]]).astype(
        float
    )
    subset = points[:pairwise_subset]
    pair_start = time.perf_counter()
    le = np.all(subset[:, None, :] <= subset[None, :, :], axis=2)
    lt = np.any(subset[:, None, :] < subset[None, :, :], axis=2)
    front_subset = int((~(le & lt).any(axis=0)).sum())
    pairwise_s = time.perf_counter() - pair_start
    total = time.perf_counter() - started
    return {
        "read_s": read - started,
        "analyze_s": total - (read - started),
        "read_cpu_s": read_cpu - started_cpu,
        "analyze_cpu_s": time.process_time() - read_cpu,
        "loadavg_1min_after": os.getloadavg()[0],
        "path_rows": len(path),
        "labels": {str(k): int(v) for k, v in pd.Series(labels).value_counts().items()},
        "pairwise_subset": len(subset),
        "pairwise_subset_s": pairwise_s,
        "pairwise_full_estimate_s": pairwise_s * (len(points) / max(len(subset), 1)) ** 2,
        "front_subset": front_subset,
        "rss_before_mb": base,
        "peak_rss_mb": peak_rss_mb(),
    }


def _optuna(exp: str) -> dict[str, Any]:
    import pandas as pd
    from optuna.study._multi_objective import _fast_non_domination_rank

    from regtune.platform.analysis.pareto import non_dominated_mask

    frame = pd.read_parquet(
        Path(exp) / "results" / "epochs", columns=["trial_id", "iteration", *OBJ_COLUMNS]
    )
    last = frame.groupby("trial_id").tail(1)
    points = np.column_stack([-last["val_acc"], last["ece"], last["size_bytes"]]).astype(float)
    started = time.perf_counter()
    ranks = _fast_non_domination_rank(points, n_below=1)
    optuna_s = time.perf_counter() - started
    started = time.perf_counter()
    mask = non_dominated_mask(points)
    regtune_s = time.perf_counter() - started
    return {
        "points": len(points),
        "optuna_front_s": optuna_s,
        "optuna_front": int((ranks == 0).sum()),
        "regtune_front_s": regtune_s,
        "regtune_front": int(mask.sum()),
        "same_front": bool(np.array_equal(ranks == 0, mask)),
    }


OBJ_COLUMNS = ["val_acc", "ece", "size_bytes"]


CONTENDERS = ("regtune", "pandas", "optuna")


def _run_contender(name: str, exp: str, subset: int) -> dict[str, Any]:
    """Contender ``name`` on the results folder ``exp``, in this process."""
    if name == "regtune":
        return _regtune(exp)
    if name == "pandas":
        return _pandas(exp, subset)
    return _optuna(exp)


def _contender(name: str, exp: str, timeout_s: int, subset: int, *, smoke: bool) -> dict[str, Any]:
    """A full run: ``name`` in a fresh process (a failure is recorded, not raised).
    A smoke run: in this process (its imports are warm), and a failure fails it."""
    if smoke:
        return _run_contender(name, exp, subset)
    args = ["--dir", exp, "--pairwise-subset", str(subset)]
    try:
        return contender_json("benchmarks.analysis_scale", name, args, timeout_s=timeout_s)
    except RuntimeError as exc:
        return {"error": str(exc)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true")
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--dir", default=None, help="results folder to reuse or create")
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--pairwise-subset", type=int, default=5000)
    parser.add_argument("--timeout-s", type=int, default=1800)
    args = parser.parse_args(argv)
    if args.contender:
        print(json.dumps(_run_contender(args.contender, args.dir, args.pairwise_subset)))
        return 0
    trials, epochs = SMOKE_SIZE if args.smoke_test else (args.trials, args.epochs)
    subset = min(args.pairwise_subset, trials)
    with tempfile.TemporaryDirectory(prefix="regtune-analysis-scale-") as tmp:
        exp = Path(args.dir) if args.dir else Path(tmp) / "scale"
        started = time.perf_counter()
        sizes = (
            write_synthetic(exp, trials, epochs)
            if not (exp / "results").exists()
            else {"trials": trials, "epochs": epochs, "rows": trials * epochs, "reused": True}
        )
        sizes["write_s"] = time.perf_counter() - started
        results = {
            name: _contender(name, str(exp), args.timeout_s, subset, smoke=args.smoke_test)
            for name in CONTENDERS
        }
    reg, pdx, opt = results["regtune"], results["pandas"], results["optuna"]
    pandas_peak = pdx["peak_rss_mb"] - pdx["rss_before_mb"] if "peak_rss_mb" in pdx else None
    rows = [
        [
            "regtune analyze --json",
            reg.get("read_s"),
            reg.get("analyze_s"),
            reg.get("analyze_cpu_s"),
            reg.get("analysis_peak_mb"),
            reg.get("needed_columns_mb"),
        ],
        [
            "straightforward pandas",
            pdx.get("read_s"),
            pdx.get("analyze_s"),
            pdx.get("analyze_cpu_s"),
            pandas_peak,
            None,
        ],
        ["front only: optuna", None, opt.get("optuna_front_s"), None, None, None],
        ["front only: regtune", None, opt.get("regtune_front_s"), None, None, None],
    ]
    headers = [
        "contender",
        "read s",
        "analysis s (wall)",
        "analysis s (CPU)",
        "peak MB over start",
        "needed columns MB",
    ]
    table = markdown_table(headers, rows)
    payload = {
        "sizes": sizes,
        "results": results,
        "targets": {"analysis_s": 2.0, "peak_over_needed": 2.0},
        "machine": machine_facts(),
        "note": "timed on a shared 2-core machine under load from other processes",
        "cpu_count": os.cpu_count(),
    }
    path = write_results(NAME, payload, table, smoke=args.smoke_test)
    print(table)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
