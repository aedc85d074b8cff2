"""Run every benchmark (``make bench``) and rebuild BENCHMARKS.md from the results.

python -m benchmarks.run_all                # run all, then summarise
python -m benchmarks.run_all --summary-only # rebuild BENCHMARKS.md only
python -m benchmarks.run_all --smoke-test   # tiny sizes: checks they run
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import RESULTS_DIR

#: (module, title, what it compares) in BENCHMARKS.md order.
BENCHMARKS = (
    ("trainables_speed", "Training-loop throughput", "regtune's Trainer vs a bare torch loop"),
    (
        "optimizer_start",
        "Optimizer start-up per training process",
        "regtune's AdamW/SGD vs torch.optim's (the torch._dynamo import), fresh processes",
    ),
    (
        "registry_lookup",
        "Registry look-ups without torch",
        "regtune models list/show and a mistyped serve NAME vs the same after import torch",
    ),
    (
        "cohort_speed",
        "Fused cohorts",
        "K members trained as one batched model vs one Trainer after another "
        "(digits/Adult MLP, digits CNN, mixed widths padded)",
    ),
    (
        "trainables_robustness",
        "Digits: accuracy and adversarial robustness",
        "FGSM-RS vs PGD-7 and TRADES training, scored by torchattacks AutoAttack + PGD-50",
    ),
    (
        "trainables_fairness",
        "Adult: fairness penalties",
        "regtune's DP/EO penalties vs fairlearn's ExponentiatedGradient",
    ),
    ("sweep_speed", "Sweep time to quality", "regtune sweep vs Optuna vs plain Ray Tune"),
    (
        "pareto_asha",
        "Multi-objective early stopping",
        "Pareto-ASHA vs scalarized ASHA vs Optuna NSGA-II",
    ),
    (
        "fairness_splits",
        "Fairness over several splits",
        "regtune's DP/EO (selection, post-processing, calibration) vs fairlearn's "
        "ExponentiatedGradient and ThresholdOptimizer, over split seeds",
    ),
    (
        "results_store",
        "Results store cost",
        "the Parquet results store per reported epoch and on a sweep's wall time",
    ),
    (
        "analysis_scale",
        "Analysis at scale",
        "`regtune analyze` vs a straightforward pandas version on 10^7 epoch rows",
    ),
    (
        "distill",
        "Distilled student vs its ensemble",
        "forward cost and test accuracy of a distilled student and the ensemble it learned from",
    ),
    (
        "serve_load",
        "Serving under load",
        "Ray Serve (with and without batching) vs plain FastAPI + uvicorn, same model",
    ),
)
OUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = """# Benchmarks

Each benchmark runs regtune and its peer side by side in the same run on the
same data, writes raw numbers to `benchmarks/results/<name>.json` and the
table below to `benchmarks/results/<name>.md`. Rebuild with `make bench`
(or one at a time: `python -m benchmarks.<name>`). Numbers were measured on
the machine named under each table (these development machines have 2 cores
that other work shares: read the ratios, which are measured in the same run,
rather than absolute times).
"""


#: The hand-measured before/after tables (benchmarks/results/changes.md): a
#: section of their own, after the benchmarks', with no JSON and no footer.
CHANGES = ("changes", "Before/after measurements of individual changes")
#: The line a section kept from the previous BENCHMARKS.md gets when its JSON
#: (or its table) is not in benchmarks/results.
NO_JSON = "_No JSON committed for this section; numbers as last written._"


def summarise(previous: str = "", results: Path = RESULTS_DIR) -> str:
    """BENCHMARKS.md from the non-smoke results present in ``results``; a
    benchmark without results keeps its section of ``previous`` (the current
    BENCHMARKS.md), so running some benchmarks does not erase what the others
    measured, marked with :data:`NO_JSON` so a reader sees no JSON backs it.
    The hand-measured tables of ``changes.md`` follow as their own section."""
    kept = _sections(previous)
    parts = [HEADER]
    for name, title, what in BENCHMARKS:
        md, js = results / f"{name}.md", results / f"{name}.json"
        heading = f"## {title}\n\n{what} (`benchmarks/{name}.py`).\n"
        if not md.exists() or not js.exists():
            old = kept.get(title)
            parts.append(_mark_no_json(old) if old else f"{heading}\n_Not run yet._\n")
            continue
        parts.append(heading)
        machine = json.loads(js.read_text()).get("machine", {})
        parts.append(md.read_text().rstrip() + "\n")
        parts.append(
            f"_Measured {machine.get('date', '?')}: {machine.get('cpu_count', '?')} CPUs, "
            f"torch {machine.get('torch', '?')}, GPU: {machine.get('cuda') or 'none'}._\n"
        )
    name, title = CHANGES
    changes = results / f"{name}.md"
    if changes.exists():
        where = f"`benchmarks/results/{name}.md`"
        parts.append(f"## {title}\n\nMeasured by hand, one table per stop ({where}).\n")
        parts.append(changes.read_text().rstrip() + "\n")
    elif title in kept:
        parts.append(kept[title])
    return "\n".join(parts)


def _mark_no_json(section: str) -> str:
    """``section`` with the :data:`NO_JSON` line after its first paragraph
    (heading and what it compares), once."""
    if NO_JSON in section:
        return section
    head, sep, rest = section.partition("\n\n")
    what, sep2, body = rest.partition("\n\n")
    if not sep2:
        return f"{section.rstrip()}\n\n{NO_JSON}\n"
    return f"{head}{sep}{what}\n\n{NO_JSON}\n\n{body}"


def _sections(text: str) -> dict[str, str]:
    """``## title`` -> that section's text (heading included) of a BENCHMARKS.md."""
    out: dict[str, str] = {}
    for chunk in text.split("\n## ")[1:]:
        title = chunk.split("\n", 1)[0].strip()
        out[title] = "## " + chunk.rstrip() + "\n"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks (unless --summary-only) and write BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--smoke-test", action="store_true")
    args = parser.parse_args(argv)
    if not args.summary_only:
        for name, _, _ in BENCHMARKS:
            module = importlib.import_module(f"benchmarks.{name}")
            module.main(["--smoke-test"] if args.smoke_test else [])
    if not args.smoke_test:
        OUT.write_text(summarise(OUT.read_text() if OUT.exists() else ""))
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
