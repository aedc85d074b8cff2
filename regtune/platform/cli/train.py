"""``regtune train``: one configuration, no Ray.

``--resume`` continues the checkpoint in ``--checkpoint-dir``. The requested
settings may differ from the stored ones (the training loop allows it, as PBT
changes strengths mid-run): the command then warns, naming each changed key
(old -> new), since the epochs already trained keep the old values. When the
stored run is already finished (its epochs done or early-stopped) and the
settings differ, nothing would be trained with the new values: the command
refuses (exit 2) rather than report a model under settings it never saw.
``--json`` prints strict JSON: non-finite numbers become ``null``.

Before the first epoch, stderr says what the data gave (rows per split, the
label's classes, numeric and categorical inputs, the sensitive groups:
:func:`~regtune.trainables.data.describe_dataset`), and each
:class:`~regtune.errors.DataWarning` (an identifier-like column, dropped rows,
an unstratified split) is one ``warning: ...`` line.
"""

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

from regtune.errors import RegtuneError, SpecError
from regtune.platform.cli.app import SetOpt, SpecArg, app, console, fail, out
from regtune.trainables.config import parse_train_config

__all__ = [
    "FINISHED_CHANGED",
    "LINE_PERIOD_S",
    "RESUME_CHANGED",
    "SHOWN_METRICS",
    "config_changes",
    "train",
]

#: Keys whose change on resume is expected and not worth a warning.
RESUME_QUIET_KEYS = frozenset({"training.epochs"})
#: Warning printed when a resumed run continues under other settings.
RESUME_CHANGED = (
    "warning: --resume: {path} was trained for {epochs} epochs with other settings; "
    "those epochs keep the old values, the remaining ones use the new: {changes}"
)
#: Refusal when the stored run is finished, so the new settings would train nothing.
FINISHED_CHANGED = (
    "--resume: the run in {path} is already finished ({epochs} epochs{early}) and was "
    "trained with other settings: {changes}; nothing would be trained with the new values. "
    "Resume without changing them, raise the epochs (budget.max_epochs in a sweep spec or "
    "preset, training.epochs in a train config), or train into a new --checkpoint-dir"
)

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
    checkpoint_every: Annotated[
        int,
        typer.Option(
            min=0, help="Epochs between checkpoints (needs --checkpoint-dir; 0: only at the end)."
        ),
    ] = 0,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from --checkpoint-dir. Changed settings (e.g. --set "
            "penalties.l2=0.5) are named in a warning and apply to the remaining epochs "
            "only; a finished run with changed settings is refused.",
        ),
    ] = False,
) -> None:
    """Train one configuration without Ray and print its final metrics."""
    from regtune.search_spaces import load_train_config
    from regtune.trainables.data import describe_dataset, load_dataset
    from regtune.trainables.loop import train as run_training

    try:
        config = parse_train_config(load_train_config(spec, set_ or []))
        if resume and checkpoint_dir is None:
            raise RegtuneError("--resume needs --checkpoint-dir")
        if checkpoint_every and checkpoint_dir is None:
            # Otherwise no checkpoint would be written anywhere, without a word.
            raise RegtuneError("--checkpoint-every needs --checkpoint-dir")
        changed: list[tuple[str, Any, Any]] = []
        if resume and checkpoint_dir is not None:
            changed = _check_resume(checkpoint_dir, config.model_dump(mode="json"))
        dataset = load_dataset(config.dataset)
        if not as_json:
            # What was read and inferred, for the user to check before the epochs run.
            console.print(describe_dataset(dataset), highlight=False, markup=False)
        result = _with_progress(
            lambda cb: run_training(
                config,
                dataset=dataset,
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
        if changed:
            payload["changed_on_resume"] = {k: {"old": a, "new": b} for k, a, b in changed}
        from regtune.platform.results.outcome import json_safe

        sys.stdout.write(json.dumps(json_safe(payload), allow_nan=False) + "\n")
        return
    _print_metrics(final, title=f"{config.dataset.name} / {config.model.arch}")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return {k.rstrip("."): v for k, v in flat.items()}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Dotted keys whose value differs between two config dumps, as (key, old, new)."""
    a, b = _flatten(old), _flatten(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def _check_resume(directory: Path, requested: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Compare the checkpoint's stored config with ``requested``: warn about
    changed keys, refuse (SpecError) when the stored run is finished. A missing,
    unreadable or damaged checkpoint (its config not a mapping, its epoch not a
    whole number) is left to the training loop's own checks, which name the field."""
    from regtune.trainables.checkpoint import TREE_FILE

    try:
        tree = json.loads((directory / TREE_FILE).read_text(encoding="utf-8"))["tree"]
        stored, epochs = tree["config"], tree["epoch"]
        early = tree.get("early") or {}
        stopped = bool(early.get("stopped")) if isinstance(early, dict) else False
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not isinstance(stored, dict) or isinstance(epochs, bool) or not isinstance(epochs, int):
        return []
    if epochs < 0:
        return []
    changed = [c for c in config_changes(stored, requested) if c[0] not in RESUME_QUIET_KEYS]
    if not changed:
        return []
    text = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changed)
    if stopped or epochs >= int(requested["training"]["epochs"]):
        early = ", early-stopped" if stopped else ""
        raise SpecError(
            FINISHED_CHANGED.format(path=directory, epochs=epochs, early=early, changes=text)
        )
    console.print(
        RESUME_CHANGED.format(path=directory, epochs=epochs, changes=text),
        style="yellow",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    return changed


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
