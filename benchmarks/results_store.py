"""What the results store costs: per reported epoch, and on a sweep's wall time.

Two measurements, side by side in one run:

- ``per-epoch``: the store's writer alone (what the Tune callback calls on
  the driver), fed realistic result dicts (a full regtune config, every
  platform metric). Cost per reported epoch of ``add`` with the default
  flush interval and with ``REGTUNE_RESULTS_FLUSH_S=0`` (a part per epoch,
  the worst case), of the final merge, and of reading everything back
  (``read_epochs``, ``read_trials``), on a local folder.
- ``sweep``: the same ``run_sweep`` (digits MLP, random search, FIFO, actor
  reuse, fixed seed, so the same configurations) with the store's callback
  (``with-store``) and with the callback removed (``no-store``), each in a
  fresh subprocess, interleaved, median of the repeats.

``--smoke-test`` (run by ``make test``: both sweeps must still run end to
end) writes a small per-epoch sample and runs both sweeps in one process on
one local Ray with one CPU: its numbers mean nothing.

    python -m benchmarks.results_store [--smoke-test] [--repeats N]
    python -m benchmarks.results_store --report-only  # table from the JSON
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    contender_in_subprocess,
    contender_in_this_process,
    markdown_table,
    median_of,
    results_dir,
    start_smoke_ray,
    write_results,
)

SAMPLES = 8
MAX_EPOCHS = 10
#: Reported epochs fed to the writer in the per-epoch measurement.
EPOCHS_PER_EPOCH_BENCH = 2000
TRIALS_PER_EPOCH_BENCH = 20
CONTENDERS = ("with-store", "no-store")


def _spec(samples: int, max_epochs: int) -> dict[str, Any]:
    return {
        "name": f"bench-store-{int(time.time() * 1000)}",
        "dataset": "digits",
        "model": {"arch": "mlp", "depth": 2, "width": {"choice": [32, 64]}},
        "training": {"batch_size": 128, "robust_every": 0, "lr": {"loguniform": [1e-3, 1e-1]}},
        "penalties": {"l2": {"loguniform": [1e-6, 1e-2]}},
        "objectives": [{"metric": "val_acc", "mode": "max"}],
        "scheduler": {"kind": "none"},
        "searcher": {"kind": "random", "seed": 0},
        "budget": {"samples": samples, "max_epochs": max_epochs},
        "resources": {"cpu": 1},
        "checkpoint": {"every": 0},
    }


def run_sweep_contender(samples: int, max_epochs: int, *, store: bool) -> dict[str, Any]:
    """One sweep in this process, with or without the results callback."""
    start = time.perf_counter()
    import regtune.platform.results.callback as callback_module
    from regtune.platform.tune.sweep import run_sweep
    from regtune.search_spaces import load_spec

    spent = [0.0]
    # Undone at the end: a --smoke-test runs both contenders in this process.
    hooks = {name: getattr(callback_module.ResultsCallback, name) for name in HOOKS}
    callbacks_hook = callback_module.results_callbacks
    if not store:
        # run_sweep looks the hook up when it runs: this removes the store.
        callback_module.results_callbacks = lambda spec, exp_path: []
    else:
        _time_hooks(callback_module.ResultsCallback, spent)
    spec = load_spec(_spec(samples, max_epochs))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            outcome = run_sweep(spec, storage=tmp)
            stored = 0
            if store:
                from regtune.platform.results import read_epochs

                stored = len(read_epochs(outcome.path))
    finally:
        callback_module.results_callbacks = callbacks_hook
        for name, original in hooks.items():
            setattr(callback_module.ResultsCallback, name, original)
    return {
        "wall_s": time.perf_counter() - start,
        "epochs_trained": sum(t.iterations for t in outcome.trials),
        "rows_stored": stored,
        "callback_s": spent[0],
    }


HOOKS = (
    "setup",
    "on_trial_result",
    "on_checkpoint",
    "on_trial_complete",
    "on_trial_error",
    "on_step_end",
    "get_state",
    "on_experiment_end",
)


def _time_hooks(cls: Any, spent: list[float]) -> None:
    """Add the seconds spent in each of the callback's Tune hooks to ``spent[0]``."""
    for name in HOOKS:
        original = getattr(cls, name)

        def timed(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _original(self, *args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - started

        setattr(cls, name, timed)


def _result(trial: int, epoch: int, config: dict[str, Any]) -> dict[str, Any]:
    metrics = {
        "train_loss": 1.0 / epoch,
        "val_loss": 1.1 / epoch,
        "val_acc": 0.9 - 0.1 / epoch,
        "gap": 0.1 / epoch,
        "ece": 0.02,
        "brier": 0.1,
        "sparsity": 0.01,
        "n_params": 12345.0,
        "size_bytes": 49380.0,
        "epoch_time_s": 0.05,
        "train_time_s": 0.04,
    }
    return {
        "training_iteration": epoch,
        "time_total_s": 0.05 * epoch,
        "time_this_iter_s": 0.05,
        "timestamp": int(time.time()),
        "date": "2026-11-30_12-00-00",
        "pid": 4242,
        "hostname": "bench",
        "node_ip": "127.0.0.1",
        "done": False,
        "trial_id": f"t{trial}",
        "iterations_since_restore": epoch,
        "epoch": float(epoch),
        "config": config,
        **metrics,
    }


def per_epoch_costs(n_epochs: int, n_trials: int) -> dict[str, float]:
    """Seconds per reported epoch of the writer's calls and of reading back."""
    from regtune.platform.results import ResultsWriter, read_epochs, read_trials
    from regtune.search_spaces import load_spec

    spec = load_spec(_spec(n_trials, n_epochs // n_trials))
    config = spec.base_config()
    out: dict[str, float] = {}
    for label, flush_s in (("default_flush", None), ("flush_every_row", 0.0)):
        with tempfile.TemporaryDirectory() as tmp:
            exp = f"{tmp}/exp"
            writer = ResultsWriter(
                exp, max_t=n_epochs // n_trials, spec=spec.to_dict(), flush_s=flush_s
            )
            writer.open()
            started = time.perf_counter()
            for trial in range(n_trials):
                for epoch in range(1, n_epochs // n_trials + 1):
                    writer.add(f"t{trial}", _result(trial, epoch, config))
                writer.end_trial(f"t{trial}", error=False)
            added = time.perf_counter() - started
            started = time.perf_counter()
            writer.close()
            closed = time.perf_counter() - started
            started = time.perf_counter()
            rows = len(read_epochs(exp))
            read_trials(exp)
            read = time.perf_counter() - started
            assert rows == n_epochs, (rows, n_epochs)
            out[f"{label}_add_ms_per_epoch"] = 1000 * added / n_epochs
            out[f"{label}_close_s"] = closed
            out[f"{label}_read_ms_per_epoch"] = 1000 * read / n_epochs
    return out


def report(payload: dict[str, Any], *, smoke: bool) -> tuple[dict[str, Any], str]:
    """The summary and the markdown table of a run's payload (``runs``, the
    writer's ``costs``, ``samples``, ``max_epochs``, ``repeats``): what a full
    run writes, and what ``--report-only`` rebuilds from the committed JSON."""
    runs: dict[str, list[dict[str, Any]]] = payload["runs"]
    samples, max_epochs, repeats = payload["samples"], payload["max_epochs"], payload["repeats"]
    costs = _writer_costs(payload)
    n_epochs, n_trials = payload.get("writer_epochs"), payload.get("writer_trials")
    if n_epochs is None or n_trials is None:  # JSON written before they were recorded
        n_epochs, n_trials = (40, 4) if smoke else (EPOCHS_PER_EPOCH_BENCH, TRIALS_PER_EPOCH_BENCH)
    with_s, without_s = (
        median_of(runs, "with-store", "wall_s"),
        median_of(runs, "no-store", "wall_s"),
    )
    epochs = median_of(runs, "with-store", "epochs_trained")
    spread = {
        name: statistics.pstdev(r["wall_s"] for r in rs) if len(rs) > 1 else math.nan
        for name, rs in runs.items()
    }
    callback_s = median_of(runs, "with-store", "callback_s")
    summary = {
        "callback_ms_per_epoch_in_sweep": 1000 * callback_s / epochs if epochs else math.nan,
        "callback_share_of_wall": callback_s / with_s,
        "sweep_wall_ratio_with_vs_without": with_s / without_s,
        "sweep_overhead_s_per_epoch": (with_s - without_s) / epochs if epochs else math.nan,
        **costs,
    }
    table = markdown_table(
        ["sweep", "wall s (median)", "spread s", "epochs", "rows stored", "in callback s"],
        [
            [
                name,
                median_of(runs, name, "wall_s"),
                spread[name],
                median_of(runs, name, "epochs_trained"),
                median_of(runs, name, "rows_stored"),
                median_of(runs, name, "callback_s"),
            ]
            for name in CONTENDERS
        ],
    )
    table += "\n\n" + markdown_table(
        ["writer, local folder", "add ms/epoch", "merge at end s", "read ms/epoch"],
        [
            [
                label.replace("_", " "),
                costs[f"{label}_add_ms_per_epoch"],
                costs[f"{label}_close_s"],
                costs[f"{label}_read_ms_per_epoch"],
            ]
            for label in ("default_flush", "flush_every_row")
        ],
    )
    where = "both in one process (smoke test)" if smoke else "each in a fresh process"
    table += (
        f"\n\n{samples} trials of {max_epochs} epochs (digits MLP, random search, FIFO), "
        f"median of {repeats} interleaved run(s), {where}: with/without the "
        f"store {summary['sweep_wall_ratio_with_vs_without']:.3f} (goal: no measurable "
        f"change; compare with the spread); time inside the store's Tune hooks "
        f"{summary['callback_ms_per_epoch_in_sweep']:.2f} ms per reported epoch "
        f"({100 * summary['callback_share_of_wall']:.2f}% of the sweep). "
        f"Writer: {n_epochs} reported epochs of {n_trials} trials.\n"
    )
    return summary, table


def _writer_costs(payload: dict[str, Any]) -> dict[str, float]:
    """The writer's per-epoch costs (``costs``; in JSON written before it was
    recorded apart, the same keys inside ``summary``)."""
    if "costs" in payload:
        return dict(payload["costs"])
    suffixes = ("_add_ms_per_epoch", "_close_s", "_read_ms_per_epoch")
    return {k: v for k, v in payload["summary"].items() if k.endswith(suffixes)}


def report_only(smoke: bool) -> Path:
    """Rebuild ``results_store[-smoke].md`` and the JSON's ``summary`` from the
    JSON's runs (its machine facts and date kept): nothing is measured."""
    path = results_dir() / ("results_store-smoke.json" if smoke else "results_store.json")
    payload = json.loads(path.read_text())
    payload["summary"], table = report(payload, smoke=smoke)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    path.with_suffix(".md").write_text(table.rstrip() + "\n")
    print(table)
    return path


#: Tries per contender: on a loaded 2-core machine Ray's start-up can time out.
TRIES = 3


def _in_this_process(name: str, samples: int, max_epochs: int) -> dict[str, Any]:
    return run_sweep_contender(samples, max_epochs, store=name == "with-store")


def _contender(name: str, samples: int, max_epochs: int, *, smoke: bool) -> dict[str, Any]:
    if smoke:
        # Checks each contender runs (in this process, on one Ray); times mean nothing.
        return contender_in_this_process(_in_this_process, name, samples, max_epochs)
    for attempt in range(1, TRIES + 1):
        try:
            return contender_in_subprocess("benchmarks.results_store", name, samples, max_epochs)
        except RuntimeError as exc:
            if attempt == TRIES or "timed out during startup" not in str(exc):
                raise
            print(f"  Ray did not start in time; try {attempt + 1} of {TRIES}", flush=True)
    raise AssertionError("unreachable")  # pragma: no cover


def main(argv: Sequence[str] | None = None) -> int:
    """Measure both; write JSON and the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke-test", action="store_true")
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the table (and the JSON's summary) from the JSON's runs; run nothing",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        report_only(args.smoke_test)
        return 0
    if args.contender:
        result = run_sweep_contender(
            args.samples, args.max_epochs, store=args.contender == "with-store"
        )
        print(json.dumps(result))
        return 0
    smoke = args.smoke_test
    samples, max_epochs = (2, 2) if smoke else (args.samples, args.max_epochs)
    repeats = 1 if smoke else args.repeats
    n_epochs, n_trials = (40, 4) if smoke else (EPOCHS_PER_EPOCH_BENCH, TRIALS_PER_EPOCH_BENCH)

    print(f"[results-store] writer: {n_epochs} epochs of {n_trials} trials ...", flush=True)
    costs = per_epoch_costs(n_epochs, n_trials)
    print(f"  {costs}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
    if smoke:
        # One Ray (one CPU: the trials share one reused actor) for both sweeps.
        start_smoke_ray()
    for rep in range(repeats):
        order = CONTENDERS if rep % 2 == 0 else CONTENDERS[::-1]
        for name in order:
            print(f"[results-store] repeat {rep + 1}: {name} ...", flush=True)
            res = _contender(name, samples, max_epochs, smoke=smoke)
            print(f"  {res}", flush=True)
            runs[name].append(res)

    payload: dict[str, Any] = {
        "samples": samples,
        "max_epochs": max_epochs,
        "repeats": repeats,
        "writer_epochs": n_epochs,
        "writer_trials": n_trials,
        "runs": runs,
        "costs": costs,
    }
    payload["summary"], table = report(payload, smoke=smoke)
    write_results("results_store", payload, table, smoke=smoke)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
