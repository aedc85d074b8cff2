"""``regtune sweep``: a sweep on Ray Tune and its summary."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from regtune.errors import RegtuneError
from regtune.platform.cli.app import NameOpt, SetOpt, SpecArg, app, console, fail, out


@app.command()
def sweep(
    spec: SpecArg,
    set_: SetOpt = None,
    address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster ('auto', host:port); default: local.")
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="Results root: a path or s3:// / gs:// URI.")
    ] = None,
    name: NameOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted experiment.")] = False,
    dashboard: Annotated[
        bool, typer.Option(help="Start the Ray dashboard with a local Ray (127.0.0.1).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run an early-stopped sweep on Ray Tune and print a summary table."""
    from regtune.platform.tune.sweep import run_sweep
    from regtune.search_spaces import load_spec

    try:
        loaded = load_spec(spec, set_ or [])
        console.print(
            f"[bold]sweep[/] {name or loaded.name}: {loaded.n_trials} trials, "
            f"scheduler {loaded.scheduler.kind}, searcher {loaded.searcher.kind}"
        )
        with console.status("starting Ray ...") as status:

            def show(snap: dict[str, Any]) -> None:
                best = "  ".join(f"{k} {v:.4f}" for k, v in snap["best"].items())
                status.update(
                    f"trials {snap['done']}/{snap['total']} done: {snap['finished']} finished, "
                    f"{snap['stopped_early']} stopped early, {snap['errors']} failed; "
                    f"{snap['running']} running | best {best or '-'}"
                )

            outcome = run_sweep(
                loaded,
                address=address,
                storage=storage,
                name=name,
                resume=resume,
                dashboard=dashboard,
                on_progress=None if as_json else show,
            )
    except RegtuneError as exc:
        raise fail(exc) from exc
    if as_json:
        sys.stdout.write(json.dumps(_outcome_json(outcome)) + "\n")
        return
    _print_sweep(outcome)


def _outcome_json(outcome: Any) -> dict[str, Any]:
    return {
        "name": outcome.name,
        "path": outcome.path,
        "elapsed_s": round(outcome.elapsed_s, 3),
        "counts": outcome.counts(),
        "front": outcome.front,
        "trials": [
            {
                "trial_id": t.trial_id,
                "status": t.status,
                "iterations": t.iterations,
                "params": t.params,
                "objectives": t.objectives,
                "checkpoint": t.checkpoint,
            }
            for t in outcome.trials
        ],
    }


def _print_sweep(outcome: Any) -> None:
    metric, mode = outcome.objectives[0]
    order = sorted(
        range(len(outcome.trials)),
        key=lambda i: (
            outcome.trials[i].status == "error",
            -outcome.trials[i].objectives.get(metric, float("nan"))
            if mode == "max"
            else outcome.trials[i].objectives.get(metric, float("nan")),
        ),
    )
    table = Table(title=f"{outcome.name}: {outcome.path}")
    table.add_column("trial")
    table.add_column("status")
    table.add_column("epochs", justify="right")
    params = list(outcome.trials[0].params) if outcome.trials else []
    for p in params:
        table.add_column(p, justify="right")
    for m, md in outcome.objectives:
        table.add_column(f"{m} ({md})", justify="right")
    if outcome.front:
        table.add_column("front")
    for i in order:
        t = outcome.trials[i]
        cells = [t.trial_id, t.status, str(t.iterations)]
        cells += [_fmt(t.params.get(p)) for p in params]
        cells += [_fmt(t.objectives.get(m)) for m, _ in outcome.objectives]
        if outcome.front:
            cells.append("*" if i in outcome.front else "")
        table.add_row(*cells)
    out.print(table)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(outcome.counts().items()))
    out.print(f"{len(outcome.trials)} trials ({counts}) in {outcome.elapsed_s:.1f} s")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
