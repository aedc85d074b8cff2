"""What a training process pays for its optimizer: regtune's AdamW/SGD vs torch.optim's.

Every ``torch.optim`` optimizer imports ``torch._dynamo`` on its first step
(and on its first ``zero_grad``/``state_dict``/``add_param_group``), which
every Tune trial worker and every ``regtune train`` pays once.
:mod:`regtune.trainables.optim` runs the same maths without it. Each
contender is a fresh process (``python -m benchmarks.optimizer_start
--contender FAMILY-KIND``) that imports torch and the optimizer class, then
builds an MLP (digits-sized: 64 -> 128 -> 10), its optimizer and a cosine
schedule, takes :data:`STEPS` steps and round-trips the optimizer's state
dict, as a trial's first epoch and checkpoint do. Measured in the process:
CPU seconds from after the imports to the end (``setup_steps_cpu_s``), CPU
seconds of the whole process (``process_cpu_s``, imports included), peak
resident memory, and whether ``torch._dynamo`` was imported. Contenders
alternate (torch, regtune, torch, ...) so load hits both alike; medians of
``--repeats`` runs, and the ratio regtune / torch.

    python -m benchmarks.optimizer_start [--repeats N] [--smoke-test]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import contender_json, markdown_table, median_of, write_results

FAMILIES = ("torch", "regtune")
KINDS = ("adamw", "sgd")
CONTENDERS = tuple(f"{family}-{kind}" for kind in KINDS for family in FAMILIES)
#: Steps taken (a small first epoch).
STEPS = 20
#: --smoke-test: one repeat of the AdamW pair (it checks that the benchmark
#: runs, inside `make test`; its numbers mean nothing).
SMOKE_CONTENDERS = ("torch-adamw", "regtune-adamw")


def _contender(name: str) -> dict[str, Any]:
    """One fresh process's measurement (see the module docstring)."""
    start = time.process_time()
    import torch
    from torch import nn

    family, kind = name.split("-")
    if family == "regtune":
        from regtune.trainables import optim as family_optim
    else:
        import torch.optim as family_optim  # type: ignore[no-redef]
    imported = time.process_time()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    if kind == "adamw":
        opt: torch.optim.Optimizer = family_optim.AdamW(model.parameters(), lr=1e-3)
    else:
        opt = family_optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS)
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        schedule.step()
    opt.load_state_dict(opt.state_dict())
    end = time.process_time()
    return {
        "import_cpu_s": imported - start,
        "setup_steps_cpu_s": end - imported,
        "process_cpu_s": end,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "imports_dynamo": "torch._dynamo" in sys.modules,
        "final_loss": float(nn.functional.cross_entropy(model(x), y).detach()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the contenders, write JSON + markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true")
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    if args.contender:
        print(json.dumps(_contender(args.contender)))
        return 0
    names = SMOKE_CONTENDERS if args.smoke_test else CONTENDERS
    repeats = 1 if args.smoke_test else args.repeats
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for rep in range(repeats):
        for name in names:
            res = contender_json("benchmarks.optimizer_start", name, [], timeout_s=600)
            print(f"[optimizer-start] repeat {rep + 1}: {name} {res}", flush=True)
            runs[name].append(res)

    def med(name: str, key: str) -> float:
        return median_of(runs, name, key)

    rows, summary = [], {}
    for name in names:
        family, kind = name.split("-")
        peer = f"torch-{kind}"
        rows.append(
            [
                name,
                med(name, "setup_steps_cpu_s"),
                med(name, "process_cpu_s"),
                med(name, "peak_rss_mb"),
                all(r["imports_dynamo"] for r in runs[name]),
                med(name, "final_loss"),
            ]
        )
        if family == "regtune" and peer in runs:
            summary[kind] = {
                "setup_steps_cpu_ratio": med(name, "setup_steps_cpu_s")
                / med(peer, "setup_steps_cpu_s"),
                "process_cpu_saved_s": med(peer, "process_cpu_s") - med(name, "process_cpu_s"),
                "peak_rss_saved_mb": med(peer, "peak_rss_mb") - med(name, "peak_rss_mb"),
                "same_final_loss": all(
                    a["final_loss"] == b["final_loss"]
                    for a, b in zip(runs[name], runs[peer], strict=True)
                ),
            }
    table = markdown_table(
        [
            "contender",
            "optimizer set-up + steps, CPU s",
            "whole process, CPU s",
            "peak RSS MiB",
            "imports torch._dynamo",
            "final loss",
        ],
        rows,
    )
    notes = [
        f"{kind}: regtune/torch set-up + steps CPU {s['setup_steps_cpu_ratio']:.3f}, "
        f"{s['process_cpu_saved_s']:.2f} CPU s and {s['peak_rss_saved_mb']:.0f} MiB less per "
        f"process, same final loss: {s['same_final_loss']}"
        for kind, s in summary.items()
        if not math.isnan(s["setup_steps_cpu_ratio"])
    ]
    table += (
        f"\n\nFresh process each, {STEPS} steps of a 64-128-10 MLP with a cosine schedule "
        f"and a state-dict round trip, medians of {repeats} run(s), contenders alternating. "
        + "; ".join(notes)
        + ".\n"
    )
    write_results(
        "optimizer_start",
        {"steps": STEPS, "repeats": repeats, "runs": runs, "summary": summary},
        table,
        smoke=args.smoke_test,
    )
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
