"""``regtune promote``: a sweep's best trials as one gated ensemble version."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from regtune.errors import RegtuneError
from regtune.platform.cli.app import app, fail, out

#: Exit status when the ensemble was built but a gate failed (nothing written).
GATE_FAILED_EXIT = 1
#: Metrics shown after promotion, in this order, when present.
SHOWN = (
    "test_acc",
    "test_loss",
    "test_ece",
    "test_dp_diff",
    "test_eo_diff",
    "test_raw_acc",
    "test_raw_dp_diff",
    "test_raw_eo_diff",
    "val_acc",
    "gap",
)


@app.command()
def promote(
    experiment: Annotated[
        str, typer.Argument(help="Experiment name under the storage root, or its path.")
    ],
    name: Annotated[str, typer.Option("--name", help="Model name to register the ensemble under.")],
    top_k: Annotated[int, typer.Option("--top-k", help="Ensemble members (best trials).")] = 3,
    objective: Annotated[
        list[str] | None,
        typer.Option(
            "--objective",
            help="Rank by METRIC[:min|max] (repeatable: Pareto); default: the sweep's.",
        ),
    ] = None,
    gate: Annotated[
        list[str] | None,
        typer.Option(
            "--gate", help="Register only if METRIC OP NUMBER holds, e.g. 'gap<=0.05' (repeatable)."
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Storage root of experiments and registry (default: $REGTUNE_STORAGE)."),
    ] = None,
    select: Annotated[
        str,
        typer.Option(
            "--select",
            help="Members: 'top' (the top-k best) or 'greedy' (of those, only the ones that "
            "improve the ensemble on validation).",
        ),
    ] = "top",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Ensemble the best trials of EXPERIMENT and register it as NAME if every gate holds.

    With two or more members the ensemble is compared with each member on the
    validation split: a member alone that does better is reported as a warning.

    Exits 1 (writing nothing) when a gate fails, 2 on bad input.
    """
    from regtune.platform.registry.gates import parse_gates
    from regtune.platform.registry.location import registry_root
    from regtune.platform.registry.promote import BAD_TOP_K
    from regtune.platform.registry.promote import promote as run_promote
    from regtune.platform.registry.selection import parse_objective

    try:
        if top_k < 1:
            raise RegtuneError(BAD_TOP_K.format(value=top_k))
        gates = parse_gates(gate or [])
        objectives = [parse_objective(o) for o in objective or []] or None
        result = run_promote(
            experiment,
            name=name,
            top_k=top_k,
            objectives=objectives,
            gates=gates,
            storage=storage,
            root=registry_root(storage),
            select=select,
        )
    except RegtuneError as exc:
        raise fail(exc) from exc
    if as_json:
        from regtune.platform.results.outcome import json_safe

        # A metric without a finite value (NaN) is null: JSON has no NaN.
        sys.stdout.write(json.dumps(json_safe(_payload(result)), allow_nan=False) + "\n")
    else:
        _print(result)
    if not result.passed:
        raise typer.Exit(code=GATE_FAILED_EXIT)


def _payload(result: Any) -> dict[str, Any]:
    return {
        "experiment": result.experiment,
        "objectives": [list(o) for o in result.objectives],
        "members": [
            {
                "trial_id": t.trial_id,
                "epoch": t.epoch,
                **{m: t.metrics.get(m) for m, _ in result.objectives},
            }
            for t in result.members
        ],
        "metrics": result.metrics,
        "gates": [
            {"gate": r.gate.text, "value": r.value, "passed": r.passed, "shortfall": r.shortfall}
            for r in result.gates
        ],
        "postprocessing": (
            None if result.postprocessing is None else result.postprocessing.to_meta()
        ),
        "warnings": result.warnings,
        "validation": None if result.validation is None else result.validation.to_dict(),
        "select": result.select,
        "dropped": result.dropped,
        # trials never ranked, with why (a constant predictor, no checkpoint, ...)
        "left_out": result.left_out,
        "registered": None if result.version is None else result.version.ref,
        "path": None if result.version is None else result.version.path,
    }


def _print(result: Any) -> None:
    members = Table(title=f"members from {Path(result.experiment).name}")
    members.add_column("trial")
    members.add_column("epoch", justify="right")
    for metric, mode in result.objectives:
        members.add_column(f"{metric} ({mode})", justify="right")
    for t in result.members:
        values = [t.metrics.get(m) for m, _ in result.objectives]
        members.add_row(
            t.trial_id, str(t.epoch), *(f"{v:.4f}" if v is not None else "-" for v in values)
        )
    out.print(members)
    scores = Table(title="ensemble" if len(result.members) > 1 else "model (one member)")
    scores.add_column("metric")
    scores.add_column("value", justify="right")
    for key in SHOWN:
        if key in result.metrics:
            scores.add_row(key, f"{result.metrics[key]:.4f}")
    out.print(scores)
    if result.postprocessing is not None:
        from regtune.platform.cli.models import postprocessing_table

        post = postprocessing_table(result.postprocessing.to_meta())
        if post is not None:
            out.print(post)
    if result.gates:
        gates = Table(title="gates")
        gates.add_column("gate")
        gates.add_column("value", justify="right")
        gates.add_column("result")
        for r in result.gates:
            verdict = (
                Text("holds", style="green") if r.passed else Text(r.verdict(digits=4), style="red")
            )
            gates.add_row(r.gate.text, f"{r.value:.4f}", verdict)
        out.print(gates)
    for warning in result.warnings:
        out.print(
            f"[yellow]warning[/]: {escape(str(warning))}",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )
    if result.left_out and not any("left out: " in w for w in result.warnings):
        from regtune.platform.registry.promote import describe_left_out

        out.print(
            f"not ranked: {describe_left_out(result.left_out)}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if result.dropped:
        out.print(f"left out by --select greedy: {', '.join(result.dropped)}", highlight=False)
    if result.version is not None:
        out.print(
            f"registered [bold]{escape(result.version.ref)}[/] at "
            f"{escape(str(result.version.path))}",
            markup=True,
            highlight=False,
        )
    else:
        failed = "; ".join(r.describe() for r in result.gates if not r.passed)
        out.print(
            f"[bold red]not registered[/]: {escape(failed)}; nothing was written",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )
