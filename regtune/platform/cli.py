"""The ``regtune`` command line (typer + rich).

Commands::

    regtune train SPEC [--set key=value ...] [--json]   one run, no Ray
    regtune sweep SPEC [--address A] [--storage S] [--name N] [--resume]
    regtune submit SPEC [--address http://HOST:8265]     the same, as a Ray job
    regtune data fetch NAME [--force]                    cache a built-in dataset
    regtune data list                                    built-in datasets
    regtune quickstart                                   the README's default job (a sweep)

Every bad value exits with status 2 and one message naming the option or key,
the value and what is allowed; nothing already stored is touched.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from regtune import __version__
from regtune.errors import RegtuneError
from regtune.trainables.config import BUILTIN_DATASETS, parse_train_config

__all__ = ["app", "main"]

app = typer.Typer(
    name="regtune",
    help="Find, serve and watch well-regularized models on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Built-in datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console(stderr=True)
out = Console()

#: Metrics shown in the final table, in this order, when present.
SHOWN_METRICS = (
    "test_acc",
    "test_loss",
    "test_ece",
    "test_brier",
    "test_dp_diff",
    "test_eo_diff",
    "test_robust_acc",
    "val_acc",
    "val_loss",
    "gap",
    "sparsity",
    "n_params",
)


#: Options several commands share, declared once.
SpecArg = Annotated[str, typer.Argument(help="Sweep/training YAML file or preset name.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a key: --set penalties.l2=0.01 (repeatable)."),
]
NameOpt = Annotated[str | None, typer.Option(help="Experiment name (default: the spec's).")]


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


@app.command()
def version() -> None:
    """Print regtune's version."""
    out.print(__version__)


@app.command()
def train(
    spec: SpecArg,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="Write checkpoints here (safetensors + JSON).")
    ] = None,
    checkpoint_every: Annotated[int, typer.Option(min=0, help="Epochs between checkpoints.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from --checkpoint-dir.")] = False,
) -> None:
    """Train one configuration without Ray and print its final metrics."""
    from regtune.search_spaces import load_train_config
    from regtune.trainables.loop import train as run_training

    try:
        config = parse_train_config(load_train_config(spec, set_ or []))
        if resume and checkpoint_dir is None:
            raise RegtuneError("--resume needs --checkpoint-dir")
        result = _with_progress(
            lambda cb: run_training(
                config,
                on_epoch=cb,
                checkpoint_dir=checkpoint_dir,
                checkpoint_every=checkpoint_every,
                resume=resume,
            ),
            total=config.training.epochs,
            quiet=as_json,
        )
    except RegtuneError as exc:
        raise _fail(exc) from exc
    final = result.final_metrics
    if as_json:
        payload = {
            "config": config.model_dump(mode="json"),
            "epochs": len(result.history),
            "stopped_early": result.stopped_early,
            "elapsed_s": round(result.elapsed_s, 3),
            "metrics": final,
        }
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    _print_metrics(final, title=f"{config.dataset.name} / {config.model.arch}")


def _with_progress(run: Any, *, total: int, quiet: bool) -> Any:
    if quiet:
        return run(None)
    columns = (
        TextColumn("[bold]epoch {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.fields[summary]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("train", total=total, summary="")

        def on_epoch(row: dict[str, float]) -> None:
            summary = f"val_acc {row['val_acc']:.4f}  val_loss {row['val_loss']:.4f}"
            progress.update(task, completed=int(row["epoch"]), summary=summary)

        return run(on_epoch)


def _print_metrics(metrics: dict[str, float], *, title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in SHOWN_METRICS:
        if key in metrics:
            value = metrics[key]
            table.add_row(key, f"{value:.0f}" if key == "n_params" else f"{value:.4f}")
    out.print(table)


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
    from regtune.platform.sweep import run_sweep
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
        raise _fail(exc) from exc
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


@app.command()
def submit(
    spec: SpecArg,
    address: Annotated[
        str | None,
        typer.Option(help="Ray dashboard address (default $RAY_ADDRESS or http://127.0.0.1:8265)."),
    ] = None,
    name: NameOpt = None,
    storage: Annotated[
        str | None, typer.Option(help="Results root on the cluster: path or s3:// / gs:// URI.")
    ] = None,
    set_: SetOpt = None,
    working_dir: Annotated[
        Path | None, typer.Option(help="Directory uploaded with the job (data files, spec).")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE environment variable for the job.")
    ] = None,
    follow: Annotated[bool, typer.Option(help="Stream the job's logs until it ends.")] = True,
) -> None:
    """Submit a sweep to a Ray cluster through the Jobs API; exit with its status."""
    from regtune.platform.jobs import parse_env_vars, submit_sweep

    try:
        outcome = submit_sweep(
            spec,
            address=address,
            name=name,
            storage=storage,
            overrides=set_ or [],
            working_dir=working_dir,
            env_vars=parse_env_vars(env or []),
            follow=follow,
            # Plain echo: job logs may contain text rich would read as markup.
            log=typer.echo,
        )
    except RegtuneError as exc:
        raise _fail(exc) from exc
    raise typer.Exit(outcome.exit_code)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(BUILTIN_DATASETS)}.")],
    force: Annotated[bool, typer.Option(help="Download again even if cached.")] = False,
) -> None:
    """Download (once) and cache a built-in dataset as Parquet."""
    from regtune.trainables.fetch import fetch_dataset

    try:
        path = fetch_dataset(name, force=force)
    except RegtuneError as exc:
        raise _fail(exc) from exc
    out.print(str(path))


@data_app.command("list")
def data_list() -> None:
    """List the built-in datasets."""
    for name in BUILTIN_DATASETS:
        out.print(name)


@app.command()
def quickstart(
    storage: Annotated[
        str | None, typer.Option(help="Results root (default $REGTUNE_STORAGE or ~/regtune_runs).")
    ] = None,
) -> None:
    """The README's default job: the quickstart sweep on a local Ray, summarised."""
    name = f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"
    console.print(
        "[bold]regtune quickstart[/]: an ASHA + TPE sweep over L2 and dropout of a small MLP "
        "on digits (preset 'quickstart')"
    )
    sweep(
        "quickstart",
        set_=None,
        address=None,
        storage=storage,
        name=name,
        resume=False,
        dashboard=False,
        as_json=False,
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
