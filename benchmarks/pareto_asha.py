"""Pareto-ASHA vs scalarized ASHA vs Optuna NSGA-II on three objectives.

The three-objective question of the ``three-objective`` preset (Adult:
maximise val_acc and robust_acc, minimise dp_diff over L2, the adversarial
method and eps, and the DP penalty strength), scaled to this machine, at an
equal budget of trials and epochs:

- ``pareto-asha``: regtune's multi-objective successive halving (random search);
- ``scalarized-asha``: Ray's ASHA on the equal-weight sum
  ``val_acc + robust_acc - dp_diff`` (same random configurations);
- ``optuna-nsga2``: Optuna's NSGA-II sampler on the three objectives, no
  pruning (Optuna has no multi-objective pruner), same trainer.

Score: the hypervolume of the final front of each run (every trial's last
reported values) against the reference point (val_acc 0.5, robust_acc 0,
dp_diff 0.5); higher is better. Each contender runs in its own subprocess
(Ray's start-up counts). ``--smoke-test`` (run by ``make test``: every
contender must still run end to end) runs them all in one process on one
local Ray with one CPU, on a small dataset: its numbers mean nothing.

    python -m benchmarks.pareto_asha [--smoke-test] [--repeats N]
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

import numpy as np

from benchmarks.common import (
    contender_in_subprocess,
    contender_in_this_process,
    markdown_table,
    median_of,
    results_dir,
    start_smoke_ray,
    write_results,
)

SAMPLES = 20
MAX_EPOCHS = 8
OBJECTIVES = (("val_acc", "max"), ("robust_acc", "max"), ("dp_diff", "min"))
REFERENCE = {"val_acc": 0.5, "robust_acc": 0.0, "dp_diff": 0.5}
CONTENDERS = ("pareto-asha", "scalarized-asha", "optuna-nsga2", "pareto-asha-1.5x")
#: --smoke-test (run by `make test` to check every contender runs): trials,
#: epochs, and Statlog German credit (1,000 rows, sensitive attribute sex)
#: instead of Adult (48,842), with a narrow model, short attacks and larger
#: learning steps (see :func:`spec_dict`).
SMOKE_SIZE = (3, 2)
SMOKE_DATASET = "german"
#: The dataset of this run (main sets it; contenders read it, in this process
#: or, through $REGTUNE_PARETO_BENCH_DATASET, in theirs).
DATASET_ENV = "REGTUNE_PARETO_BENCH_DATASET"


def _dataset() -> str:
    return os.environ.get(DATASET_ENV, "adult")


#: The last row spends Pareto-ASHA's saved time: 1.5x the trials, still less
#: wall time than NSGA-II's run (the "equal hypervolume in less time" question).
MORE_TRIALS = 1.5
SCALAR = "scalarized"


def spec_dict(samples: int, max_epochs: int, scheduler: str) -> dict[str, Any]:
    """The shared search space (the preset's, smaller model and budget)."""
    objectives = (
        [{"metric": m, "mode": d} for m, d in OBJECTIVES]
        if scheduler == "pareto-asha"
        else [{"metric": "val_acc", "mode": "max"}]
    )
    sched: dict[str, Any] = {
        "kind": "pareto-asha" if scheduler == "pareto-asha" else "asha",
        "grace_period": 1,
        "reduction_factor": 3,
    }
    smoke = _dataset() == SMOKE_DATASET
    return {
        "name": f"bench-{scheduler}-{int(time.time() * 1000)}",
        "dataset": _dataset(),
        "model": {"arch": "mlp", "width": 16 if smoke else 64, "depth": 2, "dropout": 0.1},
        "training": {
            # Smoke: larger steps on German credit's 600 training rows, so two
            # epochs reach the reference box and the hypervolume is computed.
            "batch_size": 64 if smoke else 512,
            "lr": 0.02 if smoke else 0.002,
            "robust_every": 1,
            "robust_steps": 3 if smoke else 10,
            "robust_samples": 100 if smoke else 500,
        },
        "penalties": {
            "l2": {"loguniform": [1e-6, 1e-2]},
            "adversarial": {
                "method": {"choice": ["none", "fgsm_rs", "pgd"]},
                "eps": {"uniform": [0.02, 0.3]},
                "steps": 2 if smoke else 5,
            },
            "fairness": {"kind": "dp", "strength": {"loguniform": [1e-3, 3.0]}},
        },
        "objectives": objectives,
        "scheduler": sched,
        "searcher": {"kind": "random", "seed": 0, "max_concurrent": 2},
        "budget": {"samples": samples, "max_epochs": max_epochs},
        "resources": {"cpu": 1},
    }


def hypervolume_of(points: list[dict[str, float]]) -> float:
    """Hypervolume of the points' front against :data:`REFERENCE`."""
    from regtune.platform.analysis.pareto import hypervolume, to_minimization

    rows = [
        [p[m] for m, _ in OBJECTIVES]
        for p in points
        if all(not math.isnan(p.get(m, math.nan)) for m, _ in OBJECTIVES)
    ]
    if not rows:
        return 0.0
    modes = [d for _, d in OBJECTIVES]
    pts = to_minimization(np.array(rows, dtype=float), modes)
    ref = to_minimization(np.array([[REFERENCE[m] for m, _ in OBJECTIVES]], dtype=float), modes)[0]
    keep = np.all(pts < ref, axis=1)
    return float(hypervolume(pts[keep], ref)) if keep.any() else 0.0


def run_ray(samples: int, max_epochs: int, scheduler: str) -> dict[str, Any]:
    """pareto-asha through ``regtune sweep``, or Ray's ASHA on the scalarized sum.

    The scalarized run uses regtune's own trainable, param space and random
    searcher; only the scheduler (and the metric it reads) differs.
    """
    start = time.perf_counter()
    from regtune.search_spaces import load_spec

    spec = load_spec(spec_dict(samples, max_epochs, scheduler))
    with tempfile.TemporaryDirectory() as tmp:
        if scheduler == "pareto-asha":
            from regtune.platform.tune.sweep import run_sweep

            outcome = run_sweep(spec, storage=tmp)
            finals = [t.metrics for t in outcome.trials if t.status != "error"]
            epochs = sum(t.iterations for t in outcome.trials)
        else:
            finals, epochs = _scalarized(spec, tmp, max_epochs)
    points = [{m: float(f.get(m, math.nan)) for m, _ in OBJECTIVES} for f in finals]
    return {
        "wall_s": time.perf_counter() - start,
        "hypervolume": hypervolume_of(points),
        "trials": len(finals),
        "epochs_trained": epochs,
        "points": points,
    }


def _scalarized(spec: Any, storage: str, max_epochs: int) -> tuple[list[dict[str, Any]], int]:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    from regtune.platform.tune.runtime import start_local_ray
    from regtune.platform.tune.space import to_param_space
    from regtune.platform.tune.trainable import TuneTrainable
    from regtune.trainables.data import load_dataset

    class Scalarized(TuneTrainable):
        def step(self) -> dict[str, Any]:
            row = super().step()
            row[SCALAR] = row["val_acc"] + row["robust_acc"] - row.get("dp_diff", 0.0)
            return row

    dataset = load_dataset(_dataset())
    # Each contender has a fresh process except in --smoke-test (one process, one Ray).
    if not ray.is_initialized():
        # regtune's loopback start (a bare _node_ip_address is ignored by Ray 2.60).
        start_local_ray()
    # ResultGrid iterates through __getitem__ (no __iter__ for mypy to see).
    grid: Any = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(Scalarized, dataset=dataset, threads=1), {"cpu": 1}
        ),
        param_space=to_param_space(spec),
        tune_config=tune.TuneConfig(
            metric=SCALAR,
            mode="max",
            scheduler=ASHAScheduler(max_t=max_epochs, grace_period=1, reduction_factor=3),
            search_alg=BasicVariantGenerator(max_concurrent=2, random_state=0),
            num_samples=spec.budget.samples,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    finals = [dict(r.metrics) for r in grid if r.error is None and r.metrics]
    return finals, sum(int(f.get("training_iteration", 0)) for f in finals)


def run_optuna(samples: int, max_epochs: int) -> dict[str, Any]:
    """Optuna's NSGA-II over the same space, each trial trained to the end."""
    start = time.perf_counter()
    import optuna

    from regtune.trainables.data import load_dataset
    from regtune.trainables.loop import Trainer

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = spec_dict(samples, max_epochs, "pareto-asha")
    ds = load_dataset(_dataset())
    points: list[dict[str, float]] = []
    epochs = 0

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        nonlocal epochs
        cfg = {
            "dataset": base["dataset"],
            "model": base["model"],
            "training": {**base["training"], "epochs": max_epochs, "seed": 0},
            "penalties": {
                "l2": trial.suggest_float("l2", 1e-6, 1e-2, log=True),
                "adversarial": {
                    "method": trial.suggest_categorical("method", ["none", "fgsm_rs", "pgd"]),
                    "eps": trial.suggest_float("eps", 0.02, 0.3),
                    "steps": base["penalties"]["adversarial"]["steps"],
                },
                "fairness": {
                    "kind": "dp",
                    "strength": trial.suggest_float("strength", 1e-3, 3.0, log=True),
                },
            },
        }
        trainer = Trainer(cfg, dataset=ds)
        while not trainer.should_stop:
            row = trainer.run_epoch()
            epochs += 1
        points.append({m: float(row[m]) for m, _ in OBJECTIVES})
        return row["val_acc"], row["robust_acc"], row["dp_diff"]

    study = optuna.create_study(
        directions=["maximize", "maximize", "minimize"],
        sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=max(4, samples // 4)),
    )
    study.optimize(objective, n_trials=samples)
    return {
        "wall_s": time.perf_counter() - start,
        "hypervolume": hypervolume_of(points),
        "trials": len(study.trials),
        "epochs_trained": epochs,
        "points": points,
    }


def _run(name: str, samples: int, max_epochs: int) -> dict[str, Any]:
    if name == "optuna-nsga2":
        return run_optuna(samples, max_epochs)
    if name == "pareto-asha-1.5x":
        return run_ray(int(samples * MORE_TRIALS), max_epochs, "pareto-asha")
    return run_ray(samples, max_epochs, name)


def report(payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The summary and the markdown table of a run's payload: what a run
    writes, and what ``--report-only`` rebuilds from the JSON on file."""
    runs: dict[str, list[dict[str, Any]]] = payload["runs"]
    samples, max_epochs = payload["samples"], payload["max_epochs"]
    repeats = payload.get("repeats") or max(len(r) for r in runs.values())
    dataset = payload.get("dataset", "adult")

    def med(name: str, key: str) -> float:
        return median_of(runs, name, key)

    rows = [
        [n, med(n, "hypervolume"), med(n, "wall_s"), med(n, "epochs_trained")] for n in CONTENDERS
    ]
    summary = {
        "hv_ratio_vs_scalarized": med("pareto-asha", "hypervolume")
        / max(med("scalarized-asha", "hypervolume"), 1e-12),
        "hv_ratio_vs_nsga2": med("pareto-asha", "hypervolume")
        / max(med("optuna-nsga2", "hypervolume"), 1e-12),
        "time_ratio_vs_nsga2": med("pareto-asha", "wall_s") / med("optuna-nsga2", "wall_s"),
        "hv_ratio_more_trials_vs_nsga2": med("pareto-asha-1.5x", "hypervolume")
        / max(med("optuna-nsga2", "hypervolume"), 1e-12),
        "time_ratio_more_trials_vs_nsga2": med("pareto-asha-1.5x", "wall_s")
        / med("optuna-nsga2", "wall_s"),
    }
    table = markdown_table(["contender", "hypervolume", "wall s", "epochs trained"], rows)
    table += (
        f"\n\n{samples} trials of up to {max_epochs} epochs on {dataset}, "
        f"median of {repeats} run(s). Pareto-ASHA hypervolume / scalarized ASHA: "
        f"{summary['hv_ratio_vs_scalarized']:.3f} (goal > 1); / NSGA-II: "
        f"{summary['hv_ratio_vs_nsga2']:.3f} (goal >= 1) at "
        f"{summary['time_ratio_vs_nsga2']:.2f}x its wall time; with {MORE_TRIALS}x the trials "
        f"(pareto-asha-1.5x): {summary['hv_ratio_more_trials_vs_nsga2']:.3f} of NSGA-II's "
        f"hypervolume at {summary['time_ratio_more_trials_vs_nsga2']:.2f}x its wall time "
        "(goal: equal hypervolume in less time).\n"
    )
    load = payload.get("load_average_1min")
    cpus = payload.get("machine", {}).get("cpu_count", os.cpu_count())
    if load:
        after = [
            f"{n} {r['load_1min_after']:.1f}"
            for n in CONTENDERS
            for r in runs.get(n, [])
            if "load_1min_after" in r
        ]
        table += (
            f"\n1-minute load average {load['start']:.1f} at the start, {load['end']:.1f} at "
            f"the end{' (' + load['source'] + ')' if 'source' in load else ''}"
            f"{'; after each contender: ' + ', '.join(after) if after else ''} "
            f"(on a machine of {cpus} CPUs shared with other work: wall times and their "
            "ratios move with it, hypervolumes do not).\n"
        )
    return summary, table


def main(argv: Sequence[str] | None = None) -> int:
    """Run every contender in its own process; write JSON and the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke-test", action="store_true")
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the table (and the JSON's summary) from the JSON's runs; run nothing",
    )
    args = parser.parse_args(argv)
    if args.contender:
        print(json.dumps(_run(args.contender, args.samples, args.max_epochs)))
        return 0
    if args.report_only:
        path = results_dir() / f"pareto_asha{'-smoke' if args.smoke_test else ''}.json"
        saved = json.loads(path.read_text())
        saved["summary"], table = report(saved)
        path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
        path.with_suffix(".md").write_text(table.rstrip() + "\n")
        print(table)
        return 0
    samples, max_epochs = SMOKE_SIZE if args.smoke_test else (args.samples, args.max_epochs)
    if args.smoke_test:
        os.environ[DATASET_ENV] = SMOKE_DATASET
        # One Ray (one CPU: each contender's trials share one reused actor) for all.
        start_smoke_ray()
    load_start = os.getloadavg()[0]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
    for rep in range(args.repeats):
        for name in CONTENDERS:
            print(f"[pareto] repeat {rep + 1}: {name} ...", flush=True)
            if args.smoke_test:
                # Checks each contender runs (in this process, on one Ray); times mean nothing.
                res = contender_in_this_process(_run, name, samples, max_epochs)
            else:
                res = contender_in_subprocess("benchmarks.pareto_asha", name, samples, max_epochs)
            print(
                f"  hv {res['hypervolume']:.4f} in {res['wall_s']:.1f} s, "
                f"{res['epochs_trained']} epochs",
                flush=True,
            )
            res["load_1min_after"] = os.getloadavg()[0]
            runs[name].append(res)

    payload: dict[str, Any] = {
        "samples": samples,
        "max_epochs": max_epochs,
        "repeats": args.repeats,
        "dataset": _dataset(),
        "runs": runs,
        "reference": REFERENCE,
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
    }
    payload["summary"], table = report(payload)
    write_results("pareto_asha", payload, table, smoke=args.smoke_test)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
