"""A distilled student vs the ensemble it learned from: forward cost and test accuracy.

The teacher is an ensemble of ``TEACHER_MEMBERS`` MLPs (different seeds),
registered through the real registry. The student, a much smaller MLP, is
trained by ``regtune distill``'s code path (a Ray task on a local Ray) on the
ensemble's soft targets; a control student of the same size is trained on the
hard labels only (``alpha=0``), so the table shows what the soft targets buy.
The student is also quantized (int8 dynamic).

Forward cost: the modules as ``load_version`` returns them (eval mode),
``torch.inference_mode``, one torch thread, per batch of 1 and of
``BATCH`` test rows; contenders are timed interleaved (ensemble, student,
int8 student, ensemble, ...) in rounds and the median per call is reported,
so load from other processes hits all alike.

Goals: student forward >= 3x cheaper than the ensemble per batch; student
test accuracy within 1 point of the ensemble's.

    python -m benchmarks.distill [--dataset digits] [--smoke-test]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from benchmarks.common import markdown_table, peak_rss_mb, start_smoke_ray, write_results
from regtune.platform.registry import Member, ModelVersion, save_version
from regtune.platform.registry.distill import DistillSettings, distill
from regtune.platform.registry.quantize import quantize_version
from regtune.trainables.data import load_dataset
from regtune.trainables.loop import train

TEACHER_MEMBERS = 3
TEACHER_MODEL = {"arch": "mlp", "width": 256, "depth": 2}
STUDENT_MODEL = {"arch": "mlp", "width": 64, "depth": 1}
TEACHER_EPOCHS, STUDENT_EPOCHS = 40, 80
BATCH = 256
ROUNDS, CALLS = 15, 40
TARGET_SPEEDUP = 3.0
TARGET_ACC_POINTS = 1.0
#: --smoke-test: one epoch each and a few timing calls, on one local Ray with
#: one CPU started while the teacher trains (checks that it runs; numbers mean nothing).
SMOKE = {"teacher_epochs": 1, "student_epochs": 1, "rounds": 2, "calls": 3}


def _teacher(dataset_name: str, epochs: int, root: str) -> ModelVersion:
    dataset = load_dataset(dataset_name)
    members = []
    for seed in range(TEACHER_MEMBERS):
        config = {
            "dataset": dataset_name,
            "model": TEACHER_MODEL,
            "training": {
                "epochs": epochs,
                "batch_size": 128,
                "lr": 1e-3,
                "seed": seed,
                "robust_every": 0,
            },
            "penalties": {"weight_decay": 1e-4},
        }
        run = train(config, dataset=dataset, device="cpu")
        members.append(Member.from_model(run.config, run.model, trial_id=f"seed{seed}"))
    return save_version("teacher", members, dataset, root=root)


def _settings(epochs: int, *, alpha: float) -> DistillSettings:
    return DistillSettings(
        student=STUDENT_MODEL, epochs=epochs, lr=3e-3, batch_size=128, temperature=4.0, alpha=alpha
    )


def _time_per_call(fn: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls


def _forward_costs(
    modules: dict[str, torch.nn.Module], x: torch.Tensor, rounds: int, calls: int
) -> dict[str, dict[str, float]]:
    batches = {"batch_1": x[:1], f"batch_{BATCH}": x[:BATCH]}
    samples: dict[str, dict[str, list[float]]] = {n: {b: [] for b in batches} for n in modules}
    with torch.inference_mode():
        for module in modules.values():  # warm-up
            for xb in batches.values():
                module(xb)
        for _ in range(rounds):
            for name, module in modules.items():
                for label, xb in batches.items():
                    call = functools.partial(module, xb)
                    samples[name][label].append(_time_per_call(call, calls))
    return {
        name: {label: statistics.median(v) * 1e6 for label, v in per.items()}
        for name, per in samples.items()
    }


def run(dataset_name: str, *, smoke: bool) -> dict[str, Any]:
    """Build teacher and students, measure, return the payload."""
    import ray

    t_epochs = SMOKE["teacher_epochs"] if smoke else TEACHER_EPOCHS
    s_epochs = SMOKE["student_epochs"] if smoke else STUDENT_EPOCHS
    rounds = SMOKE["rounds"] if smoke else ROUNDS
    calls = SMOKE["calls"] if smoke else CALLS
    with tempfile.TemporaryDirectory(prefix="regtune-distill-bench-") as root:
        if smoke:
            # Ray's processes boot while the teacher trains (distill joins this Ray).
            with ThreadPoolExecutor(max_workers=1) as pool:
                training = pool.submit(_teacher, dataset_name, t_epochs, root)
                start_smoke_ray(preload=())
                teacher = training.result()
        else:
            teacher = _teacher(dataset_name, t_epochs, root)
        started = time.perf_counter()
        student = distill(
            "teacher",
            _settings(s_epochs, alpha=0.9),
            name="student",
            root=root,
        )
        distill_s = time.perf_counter() - started
        control = distill("teacher", _settings(s_epochs, alpha=0.0), name="control", root=root)
        int8 = quantize_version("student", root=root)
        ray.shutdown()
        dataset = load_dataset(dataset_name)
        torch.set_num_threads(1)
        versions = {
            "ensemble": teacher,
            "student": student,
            "student_int8": int8,
            "student_hard_labels": control,
        }
        costs = _forward_costs(
            {k: v.module for k, v in versions.items() if k != "student_hard_labels"},
            dataset.test.x,
            rounds,
            calls,
        )
    acc = {k: v.metrics["test_acc"] for k, v in versions.items()}
    params = {k: v.metrics["n_params"] for k, v in versions.items()}
    size = {k: v.metrics["size_bytes"] for k, v in versions.items()}
    big = f"batch_{BATCH}"
    speedup = {b: costs["ensemble"][b] / costs["student"][b] for b in costs["student"]}
    gap_points = (acc["ensemble"] - acc["student"]) * 100
    return {
        "dataset": dataset_name,
        "teacher": {"members": TEACHER_MEMBERS, "model": TEACHER_MODEL, "epochs": t_epochs},
        "student": {"model": STUDENT_MODEL, "epochs": s_epochs, "temperature": 4.0, "alpha": 0.9},
        "distill_wall_s": distill_s,
        "forward_us": costs,
        "test_acc": acc,
        "n_params": params,
        "size_bytes": size,
        "speedup_vs_ensemble": speedup,
        "student_acc_gap_points": gap_points,
        "goals": {
            "speedup_target": TARGET_SPEEDUP,
            "speedup_met": speedup[big] >= TARGET_SPEEDUP,
            "acc_points_target": TARGET_ACC_POINTS,
            "acc_met": gap_points <= TARGET_ACC_POINTS,
        },
        "torch_threads_timed": 1,
        "peak_rss_mb": peak_rss_mb(),
    }


def _table(payload: dict[str, Any]) -> str:
    costs, acc = payload["forward_us"], payload["test_acc"]
    rows = []
    for name in ("ensemble", "student", "student_int8", "student_hard_labels"):
        # The hard-label control has the student's architecture: its cost is the student's.
        c = costs.get(name, {})
        same = "as student"
        rows.append(
            [
                name,
                acc[name],
                payload["n_params"][name],
                payload["size_bytes"][name],
                c.get("batch_1", same),
                c.get(f"batch_{BATCH}", same),
            ]
        )
    table = markdown_table(
        [
            "model",
            "test_acc",
            "params",
            "weight bytes",
            "us / batch of 1",
            f"us / batch of {BATCH}",
        ],
        rows,
    )
    s = payload["speedup_vs_ensemble"]
    return (
        f"{table}\n\nStudent vs ensemble: {s[f'batch_{BATCH}']:.1f}x cheaper per batch of {BATCH} "
        f"({s['batch_1']:.1f}x per single row); accuracy gap "
        f"{payload['student_acc_gap_points']:.2f} points (goals: >= {TARGET_SPEEDUP:.0f}x, "
        f"<= {TARGET_ACC_POINTS:.0f} point).\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and write ``benchmarks/results/distill.{json,md}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=["digits", "breast_cancer", "adult"])
    parser.add_argument("--smoke-test", action="store_true", help="tiny sizes: check that it runs")
    args = parser.parse_args(argv)
    payload = run(args.dataset, smoke=args.smoke_test)
    table = _table(payload)
    path = write_results("distill", payload, table, smoke=args.smoke_test)
    print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
