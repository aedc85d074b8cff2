"""``regtune train``: one configuration, no Ray."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from regtune.errors import RegtuneError
from regtune.platform.cli.app import SetOpt, SpecArg, app, console, fail, out
from regtune.trainables.config import parse_train_config

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
        raise fail(exc) from exc
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
