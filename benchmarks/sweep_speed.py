"""Time to quality of a sweep: regtune vs Optuna vs plain Ray Tune.

The same search space over a digits MLP (learning rate, L2, dropout, width),
the same 40-trial budget of up to 30 epochs, the same training code
(:class:`regtune.trainables.loop.Trainer`, one epoch per report), so only
the orchestration differs:

- ``regtune``: ``run_sweep`` with ASHA + hyperopt TPE (actor reuse, dataset
  in the object store, lean local Ray);
- ``optuna``: TPE sampler + HyperbandPruner, in one process;
- ``optuna-2jobs``: the same with ``n_jobs=2`` (two trials at once in
  threads, one torch thread each): the strongest one-machine peer;
- ``regtune-fused``: ``run_sweep`` with ASHA + TPE and ``resources.fuse``
  (:data:`FUSE` trials trained together as one batched model per cohort
  worker, every member still a trial of Tune's searcher and scheduler,
  driven from the driver with no process per member);
- ``tune-plain``: a Ray Tune function trainable with ASHA + HyperOptSearch,
  default ``ray.init`` and no actor reuse (what a Ray Tune user writes first);
- ``tune-bare-reuse`` vs ``regtune-fifo``: overhead of regtune's adapter over
  a bare function trainable with the same settings (random search, FIFO,
  actor reuse, same seed, so the same configurations).

Each contender runs in a fresh subprocess, so Ray's start-up is counted and
nothing is warm. Wall time is the subprocess's own measurement from before
``import ray``/``optuna`` to the end of the search. ``--smoke-test`` (run by
``make test``: every contender must still run end to end) runs them all in
one process on one local Ray with one CPU, :data:`SMOKE_SIZE` trials each:
its times mean nothing.

    python -m benchmarks.sweep_speed [--smoke-test] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import (
    contender_in_subprocess,
    contender_in_this_process,
    markdown_table,
    median_of,
    start_smoke_ray,
    write_results,
)

SAMPLES = 40
MAX_EPOCHS = 30
CPUS_PER_TRIAL = 1
#: ASHA grace period. Measured both: with 1 epoch ASHA judged the learning-rate range
#: too early (best val_acc 0.9704 in 12.4 s, 253 epochs); 2 matched Optuna's quality.
GRACE = 2
BASE: dict[str, Any] = {
    "dataset": "digits",
    "model": {"arch": "mlp", "depth": 2},
    "training": {"batch_size": 128, "robust_every": 0},
}
QUALITY_TOLERANCE = 0.003  # 0.3 point of validation accuracy
CONTENDERS = (
    "regtune",
    "regtune-fused",
    "optuna",
    "optuna-2jobs",
    "tune-plain",
    "regtune-fifo",
    "tune-bare-reuse",
)
#: Members per cohort of ``regtune-fused`` (``--fuse`` overrides it): see
#: docs/fused.md for the measurement behind it.
FUSE = 4
#: Set by ``--fuse`` for the contender subprocesses.
FUSE_ENV = "REGTUNE_BENCH_SWEEP_FUSE"
#: Optuna's worker threads in ``optuna-2jobs`` (one per core here).
OPTUNA_JOBS = 2
#: --smoke-test (run by `make test` to check every contender runs): trials, epochs
#: (3: one more than GRACE, so ASHA has a rung below max_epochs, as the spec requires).
SMOKE_SIZE = (2, 3)
#: --smoke-test trials of ``tune-plain``: without actor reuse each trial is a fresh
#: actor process (torch and Ray Tune imported again, ~7 CPU-s); one runs the same code.
SMOKE_PLAIN_SAMPLES = 1


def _spec(
    samples: int, max_epochs: int, scheduler: str, searcher: str, fuse: int = 1
) -> dict[str, Any]:
    # Fused members run fuse x cohort slots at once (their own limit); the
    # unfused sweep keeps TPE to 2 at a time, one per core.
    hyperopt = {"kind": searcher, "seed": 0} | ({} if fuse > 1 else {"max_concurrent": 2})
    return {
        "name": f"bench-{scheduler}-{searcher}-{int(time.time() * 1000)}",
        **BASE,
        "model": {
            **BASE["model"],
            "width": {"choice": [32, 64, 128, 256]},
            "dropout": {"uniform": [0.0, 0.5]},
        },
        "training": {**BASE["training"], "lr": {"loguniform": [1e-4, 1e-1]}},
        "penalties": {"l2": {"loguniform": [1e-6, 1e-2]}},
        "objectives": [{"metric": "val_acc", "mode": "max"}],
        "scheduler": {"kind": scheduler, "grace_period": GRACE, "reduction_factor": 3}
        if scheduler == "asha"
        else {"kind": scheduler},
        "searcher": hyperopt if searcher == "hyperopt" else {"kind": searcher, "seed": 0},
        "budget": {"samples": samples, "max_epochs": max_epochs},
        "resources": {"cpu": CPUS_PER_TRIAL, "fuse": fuse},
        "checkpoint": {"every": 0},
    }


def _config_from_params(lr: float, l2: float, dropout: float, width: int, epochs: int) -> dict:
    return {
        **BASE,
        "model": {**BASE["model"], "width": width, "dropout": dropout},
        "training": {**BASE["training"], "lr": lr, "epochs": epochs},
        "penalties": {"l2": l2},
    }


# -- contenders (each runs inside its own subprocess) ------------------------------


def run_regtune(samples: int, max_epochs: int, fifo: bool, fuse: int = 1) -> dict[str, Any]:
    """regtune's own sweep (ASHA + TPE, or FIFO + random for the overhead row;
    ``fuse`` > 1: fused trials)."""
    start = time.perf_counter()
    from regtune.platform.tune.sweep import run_sweep
    from regtune.search_spaces import load_spec

    spec = load_spec(
        _spec(
            samples,
            max_epochs,
            "none" if fifo else "asha",
            "random" if fifo else "hyperopt",
            fuse=fuse,
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_sweep(spec, storage=tmp)
    wall = time.perf_counter() - start
    best = outcome.best
    return {
        "wall_s": wall,
        "best_val_acc": best.objectives["val_acc"] if best else math.nan,
        "trials": len(outcome.trials),
        "epochs_trained": sum(t.iterations for t in outcome.trials),
    }


def run_optuna(samples: int, max_epochs: int, n_jobs: int = 1) -> dict[str, Any]:
    """Optuna TPE + HyperbandPruner over the same space and trainer; with
    ``n_jobs`` > 1, that many trials at once in threads, one torch thread each."""
    start = time.perf_counter()
    import threading

    import optuna
    import torch

    from regtune.trainables.data import load_dataset
    from regtune.trainables.loop import Trainer

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    threads = torch.get_num_threads()
    if n_jobs > 1:
        # Optuna's jobs are threads of this process: one torch thread each.
        torch.set_num_threads(1)
    ds = load_dataset("digits")
    epochs_trained = 0
    count = threading.Lock()

    def objective(trial: optuna.Trial) -> float:
        nonlocal epochs_trained
        cfg = _config_from_params(
            trial.suggest_float("lr", 1e-4, 1e-1, log=True),
            trial.suggest_float("l2", 1e-6, 1e-2, log=True),
            trial.suggest_float("dropout", 0.0, 0.5),
            trial.suggest_categorical("width", [32, 64, 128, 256]),
            max_epochs,
        )
        trainer = Trainer(cfg, dataset=ds)
        best = 0.0
        while not trainer.should_stop:
            row = trainer.run_epoch()
            with count:
                epochs_trained += 1
            best = max(best, row["val_acc"])
            trial.report(row["val_acc"], int(row["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned()
        return row["val_acc"]

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs),
    )
    try:
        study.optimize(objective, n_trials=samples, n_jobs=n_jobs)
    finally:
        torch.set_num_threads(threads)
    best = max(
        (
            t.intermediate_values[max(t.intermediate_values)]
            for t in study.trials
            if t.intermediate_values
        ),
        default=math.nan,
    )
    return {
        "wall_s": time.perf_counter() - start,
        "best_val_acc": best,
        "trials": len(study.trials),
        "epochs_trained": epochs_trained,
    }


def _function_trainable(config: dict[str, Any], dataset: Any = None) -> None:
    from ray import tune

    from regtune.trainables.loop import Trainer

    trainer = Trainer(config, dataset=dataset)
    while not trainer.should_stop:
        tune.report(trainer.run_epoch())


def run_tune(samples: int, max_epochs: int, *, bare_reuse: bool) -> dict[str, Any]:
    """Plain Ray Tune (ASHA + HyperOpt, no reuse) or a bare reused function trainable."""
    start = time.perf_counter()
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.hyperopt import HyperOptSearch

    from regtune.trainables.data import load_dataset

    space = _config_from_params(
        tune.loguniform(1e-4, 1e-1),
        tune.loguniform(1e-6, 1e-2),
        tune.uniform(0.0, 0.5),
        tune.choice([32, 64, 128, 256]),
        max_epochs,
    )
    # Each contender has a fresh process (and starts Ray) except in --smoke-test,
    # where they share one process and the first contender's Ray. Its own Ray
    # ("local"), never one that $RAY_ADDRESS or `ray start` left behind.
    if bare_reuse:
        if not ray.is_initialized():
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        search: Any = BasicVariantGenerator(random_state=0)
        scheduler: Any = FIFOScheduler()
    else:
        if not ray.is_initialized():
            ray.init(address="local", log_to_driver=False)
        search = ConcurrencyLimiter(HyperOptSearch(random_state_seed=0), max_concurrent=2)
        scheduler = ASHAScheduler(max_t=max_epochs, grace_period=1, reduction_factor=3)
    ds = load_dataset("digits")
    trainable = tune.with_resources(
        tune.with_parameters(_function_trainable, dataset=ds), {"cpu": CPUS_PER_TRIAL}
    )
    with tempfile.TemporaryDirectory() as tmp:
        # ResultGrid iterates through __getitem__ (no __iter__ for mypy to see).
        grid: Any = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric="val_acc",
                mode="max",
                search_alg=search,
                scheduler=scheduler,
                num_samples=samples,
                reuse_actors=bare_reuse,
            ),
            run_config=tune.RunConfig(storage_path=tmp, verbose=0),
        ).fit()
    results = [r.metrics for r in grid if r.metrics]
    return {
        "wall_s": time.perf_counter() - start,
        "best_val_acc": max((float(m["val_acc"]) for m in results), default=math.nan),
        "trials": len(results),
        "epochs_trained": sum(int(m.get("training_iteration", 0)) for m in results),
    }


def _run_contender(name: str, samples: int, max_epochs: int) -> dict[str, Any]:
    if name == "regtune":
        return run_regtune(samples, max_epochs, fifo=False)
    if name == "regtune-fused":
        return run_regtune(
            samples, max_epochs, fifo=False, fuse=int(os.environ.get(FUSE_ENV, FUSE))
        )
    if name == "optuna-2jobs":
        return run_optuna(samples, max_epochs, n_jobs=OPTUNA_JOBS)
    if name == "regtune-fifo":
        return run_regtune(samples, max_epochs, fifo=True)
    if name == "optuna":
        return run_optuna(samples, max_epochs)
    if name == "tune-plain":
        return run_tune(samples, max_epochs, bare_reuse=False)
    if name == "tune-bare-reuse":
        return run_tune(samples, max_epochs, bare_reuse=True)
    raise SystemExit(f"unknown contender {name!r}; allowed: {', '.join(CONTENDERS)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run every contender in its own process; write JSON and the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke-test", action="store_true")
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--fuse", type=int, default=FUSE, help="members per cohort (fused)")
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=list(CONTENDERS))
    args = parser.parse_args(argv)
    if args.contender:
        print(json.dumps(_run_contender(args.contender, args.samples, args.max_epochs)))
        return 0
    samples, max_epochs = SMOKE_SIZE if args.smoke_test else (args.samples, args.max_epochs)
    os.environ[FUSE_ENV] = str(args.fuse)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.only}
    if args.smoke_test:
        # One Ray (one CPU: each contender's trials share one reused actor) for all.
        start_smoke_ray()
    for rep in range(args.repeats):
        for name in args.only:
            print(f"[sweep-speed] repeat {rep + 1}: {name} ...", flush=True)
            if args.smoke_test:
                # Checks each contender runs (in this process, on one Ray); times mean nothing.
                n = SMOKE_PLAIN_SAMPLES if name == "tune-plain" else samples
                res = contender_in_this_process(_run_contender, name, n, max_epochs)
            else:
                res = contender_in_subprocess("benchmarks.sweep_speed", name, samples, max_epochs)
            print(f"  {res}", flush=True)
            runs[name].append(res)

    def med(name: str, key: str) -> float:
        return median_of(runs, name, key)

    rows = [
        [
            name,
            med(name, "wall_s"),
            med(name, "best_val_acc"),
            med(name, "epochs_trained"),
            med(name, "wall_s") / med("optuna", "wall_s") if "optuna" in runs else math.nan,
        ]
        for name in args.only
    ]

    def known(*values: float) -> list[float]:
        return [v for v in values if not math.isnan(v)] or [math.nan]

    # The peers that ran (min/max with NaN would depend on the order).
    faster_optuna = min(known(med("optuna", "wall_s"), med("optuna-2jobs", "wall_s")))
    best_optuna = max(known(med("optuna", "best_val_acc"), med("optuna-2jobs", "best_val_acc")))
    summary = {
        "time_ratio_regtune_vs_optuna": med("regtune", "wall_s") / med("optuna", "wall_s"),
        "quality_gap_vs_optuna": med("optuna", "best_val_acc") - med("regtune", "best_val_acc"),
        "time_ratio_regtune_vs_plain_tune": med("regtune", "wall_s") / med("tune-plain", "wall_s"),
        "overhead_ratio_vs_bare_tune": med("regtune-fifo", "wall_s")
        / med("tune-bare-reuse", "wall_s"),
        "fuse": args.fuse,
        "time_ratio_fused_vs_faster_optuna": med("regtune-fused", "wall_s") / faster_optuna,
        "quality_gap_fused_vs_optuna": best_optuna - med("regtune-fused", "best_val_acc"),
        "time_ratio_fused_vs_regtune": med("regtune-fused", "wall_s") / med("regtune", "wall_s"),
    }
    table = markdown_table(
        [
            "contender",
            "wall s (Ray start incl.)",
            "best val_acc",
            "epochs trained",
            "time vs Optuna",
        ],
        rows,
    )
    table += (
        f"\n\n{samples} trials of up to {max_epochs} epochs, digits MLP, median of "
        f"{args.repeats} run(s). regtune/Optuna time ratio "
        f"{summary['time_ratio_regtune_vs_optuna']:.2f} (goal <= 1.0) at a quality gap of "
        f"{summary['quality_gap_vs_optuna'] * 100:+.2f} points (goal within "
        f"{QUALITY_TOLERANCE * 100:.1f}); overhead regtune-fifo/tune-bare-reuse "
        f"{summary['overhead_ratio_vs_bare_tune']:.2f} (goal <= 1.1). regtune uses ASHA "
        f"with grace period {GRACE} (see GRACE); tune-plain keeps 1, the usual first try. "
        f"Fused (fuse {args.fuse}) / the faster Optuna: "
        f"{summary['time_ratio_fused_vs_faster_optuna']:.2f} (goal <= 0.5) at a quality gap "
        f"of {summary['quality_gap_fused_vs_optuna'] * 100:+.2f} points to the better Optuna; "
        f"fused / unfused regtune {summary['time_ratio_fused_vs_regtune']:.2f}.\n"
    )
    write_results(
        "sweep_speed",
        {"samples": samples, "max_epochs": max_epochs, "runs": runs, "summary": summary},
        table,
        smoke=args.smoke_test,
    )
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
