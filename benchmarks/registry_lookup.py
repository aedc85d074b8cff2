"""What a registry look-up costs: ``regtune models list`` / ``models show`` and a
mistyped ``regtune serve NAME``, each in a fresh process, against the same
command in a process that imports torch first (what every one of them paid
before the registry's look-ups stopped importing torch).

Each contender is a fresh process (``python -m benchmarks.registry_lookup
--contender NAME ROOT``) that runs one CLI command through typer's runner on
a registry holding one small digits model, and reports its own CPU seconds
(imports included), its peak resident memory, the command's exit code and
whether torch was imported. Contenders alternate so load hits both alike;
medians of ``--repeats`` runs, and the ratio without torch / with torch.

    python -m benchmarks.registry_lookup [--repeats N] [--smoke-test]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import contender_json, markdown_table, median_of, write_results

#: The commands timed (their CLI words after ``regtune``; ROOT is the storage root).
COMMANDS = {
    "models-list": ["models", "list", "--json", "--storage", "ROOT"],
    "models-show": ["models", "show", "digits:1", "--storage", "ROOT"],
    "serve-typo": ["serve", "digitz", "--storage", "ROOT"],
}
#: Each command runs as regtune does it ("lookup") and after ``import torch`` ("torch-first").
MODES = ("torch-first", "lookup")
CONTENDERS = tuple(f"{mode}:{command}" for command in COMMANDS for mode in MODES)
#: --smoke-test: one repeat of the models-list pair (it checks that the benchmark
#: runs, inside `make test`; its numbers mean nothing).
SMOKE_CONTENDERS = ("torch-first:models-list", "lookup:models-list")


def _contender(name: str, root: str) -> dict[str, Any]:
    """One fresh process's measurement (see the module docstring)."""
    start = time.process_time()
    mode, command = name.split(":")
    if mode == "torch-first":
        import torch  # noqa: F401
    from typer.testing import CliRunner

    from regtune.platform.cli import app

    words = [root if w == "ROOT" else w for w in COMMANDS[command]]
    result = CliRunner().invoke(app, words)
    return {
        "cpu_s": time.process_time() - start,
        "peak_rss_mb": _peak_rss_mb(),
        "exit_code": result.exit_code,
        "imports_torch": "torch" in sys.modules,
    }


def _peak_rss_mb() -> float:
    """This process's peak resident memory since it started (``VmHWM``: after exec,
    unlike ``ru_maxrss``, which keeps the forking parent's peak); NaN off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def _registry(root: Path) -> None:
    """A storage root whose registry holds ``digits:1`` (a small MLP, one epoch)."""
    from regtune.platform.registry import Member, save_version
    from regtune.trainables.data import load_dataset
    from regtune.trainables.loop import train

    config = {
        "dataset": "digits",
        "model": {"arch": "mlp", "width": 16, "depth": 1},
        "training": {"epochs": 1, "robust_every": 0},
    }
    data = load_dataset("digits")
    model = train(config, dataset=data, device="cpu").model
    save_version("digits", [Member.from_model(config, model)], data, root=str(root / "registry"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the contenders, write JSON + markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true")
    parser.add_argument("--contender", choices=CONTENDERS)
    parser.add_argument("--root", help="storage root (with --contender)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    if args.contender:
        print(json.dumps(_contender(args.contender, args.root)))
        return 0
    names = SMOKE_CONTENDERS if args.smoke_test else CONTENDERS
    repeats = 1 if args.smoke_test else args.repeats
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        _registry(Path(tmp))
        for rep in range(repeats):
            for name in names:
                res = contender_json(
                    "benchmarks.registry_lookup", name, ["--root", tmp], timeout_s=300
                )
                print(f"[registry-lookup] repeat {rep + 1}: {name} {res}", flush=True)
                runs[name].append(res)

    def med(name: str, key: str) -> float:
        return median_of(runs, name, key)

    rows, summary = [], {}
    for name in names:
        rows.append(
            [
                name,
                med(name, "cpu_s"),
                med(name, "peak_rss_mb"),
                sorted({r["exit_code"] for r in runs[name]}),
                all(r["imports_torch"] for r in runs[name]),
            ]
        )
        mode, command = name.split(":")
        if mode == "lookup" and f"torch-first:{command}" in runs:
            peer = f"torch-first:{command}"
            summary[command] = {
                "cpu_ratio": med(name, "cpu_s") / med(peer, "cpu_s"),
                "rss_ratio": med(name, "peak_rss_mb") / med(peer, "peak_rss_mb"),
            }
    table = markdown_table(
        ["contender", "process CPU-s", "peak RSS MiB", "exit code", "imports torch"], rows
    )
    notes = [
        f"{command}: CPU {s['cpu_ratio']:.2f}x, memory {s['rss_ratio']:.2f}x"
        for command, s in summary.items()
    ]
    table += (
        f"\nregtune's look-ups (lookup) vs the same command after `import torch` "
        f"(torch-first, what they paid before), fresh processes, medians of {repeats} run(s), "
        "contenders alternating. " + "; ".join(notes) + ".\n"
    )
    write_results(
        "registry_lookup",
        {"repeats": repeats, "runs": runs, "summary": summary},
        table,
        smoke=args.smoke_test,
    )
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
