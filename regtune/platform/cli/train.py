"""``regtune train``: one configuration, no Ray."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from regtune.errors import RegtuneError
from regtune.platform.cli.app import SetOpt, SpecArg, app, console, fail, out
from regtune.trainables.config import parse_train_config

__all__ = ["LINE_PERIOD_S", "SHOWN_METRICS", "train"]

#: Seconds between epoch lines when the output is not a terminal (as for sweeps).
LINE_PERIOD_S = 5.0

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
    if not console.is_terminal:
        return run(_epoch_lines(total))
    columns = (
        TextColumn("[bold]epoch {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.fields[summary]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("train", total=total, summary="")

        def on_epoch(row: dict[str, float]) -> None:
            progress.update(task, completed=int(row["epoch"]), summary=_epoch_summary(row))

        return run(on_epoch)


def _epoch_summary(row: dict[str, float]) -> str:
    return f"val_acc {row['val_acc']:.4f}  val_loss {row['val_loss']:.4f}"


def _epoch_lines(
    total: int, *, period_s: float = LINE_PERIOD_S, clock: Callable[[], float] = time.monotonic
) -> Callable[[dict[str, float]], None]:
    """For output that is not a terminal (CI logs, ``tee``): a plain line for the
    first epoch, then at most one every ``period_s`` seconds, and the last epoch."""
    started = clock()
    last: list[float] = []

    def on_epoch(row: dict[str, float]) -> None:
        now, epoch = clock(), int(row["epoch"])
        if last and now - last[0] < period_s and epoch < total:
            return
        last[:] = [now]
        console.print(
            f"[{now - started:.0f} s] epoch {epoch}/{total}  {_epoch_summary(row)}",
            highlight=False,
            markup=False,
        )

    return on_epoch


def _print_metrics(metrics: dict[str, float], *, title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in SHOWN_METRICS:
        if key in metrics:
            value = metrics[key]
            table.add_row(key, f"{value:.0f}" if key == "n_params" else f"{value:.4f}")
    out.print(table)
