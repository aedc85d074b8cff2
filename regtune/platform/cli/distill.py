"""``regtune distill``: a smaller student trained on a registered model's soft targets."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.markup import escape

from regtune.errors import RegtuneError
from regtune.platform.cli.app import SetOpt, app, fail, out
from regtune.platform.cli.models import JsonOpt, StorageOpt


@app.command()
def distill(
    teacher: Annotated[
        str, typer.Argument(help="Teacher: NAME, NAME:VERSION or a version directory.")
    ],
    student: Annotated[str, typer.Option(help="Student architecture: logreg, mlp or cnn.")] = "mlp",
    width: Annotated[int, typer.Option(help="Student hidden width.")] = 32,
    depth: Annotated[int, typer.Option(help="Student hidden layers (mlp).")] = 1,
    dropout: Annotated[float, typer.Option(help="Student dropout.")] = 0.0,
    temperature: Annotated[
        float, typer.Option(help="Softmax temperature of the soft targets.")
    ] = 4.0,
    alpha: Annotated[float, typer.Option(help="Weight of the soft-target term, in [0, 1].")] = 0.9,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 20,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 3e-3,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    same_regularizers: Annotated[
        bool,
        typer.Option(help="Train with the teacher's regularizers (adversarial ones included)."),
    ] = False,
    set_: SetOpt = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Register under this model name (default: the teacher's; a student that "
            "misses a gate of the teacher's lineage is registered only under another name).",
        ),
    ] = None,
    quantize: Annotated[
        bool, typer.Option(help="Also register an int8 dynamically quantized copy.")
    ] = False,
    gpus: Annotated[
        float | None, typer.Option(help="GPUs for the task (default: 1 if the cluster has one).")
    ] = None,
    cpus: Annotated[float, typer.Option(help="CPUs for the task.")] = 1.0,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: a local Ray).")
    ] = None,
    storage: StorageOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Distill TEACHER into a student on Ray and register it with its teacher recorded."""
    from regtune.platform.registry.distill import DistillSettings
    from regtune.platform.registry.distill import distill as run_distill
    from regtune.platform.registry.location import registry_root
    from regtune.platform.registry.quantize import quantize_version

    try:
        root = registry_root(storage)
        settings = DistillSettings(
            student={"arch": student, "width": width, "depth": depth, "dropout": dropout},
            temperature=temperature,
            alpha=alpha,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            same_regularizers=same_regularizers,
            overrides=tuple(set_ or ()),
        )
        version = run_distill(
            teacher, settings, name=name, root=root, address=address, gpus=gpus, cpus=cpus
        )
    except RegtuneError as exc:
        raise fail(exc) from exc
    try:
        quantized = quantize_version(version.ref, root=root) if quantize else None
    except RegtuneError as exc:
        raise fail(
            RegtuneError(f"registered student {version.ref}, but not its int8 copy: {exc}")
        ) from exc
    teacher_meta = version.meta["lineage"]["teacher"]
    payload = {
        "registered": version.ref,
        "path": version.path,
        "teacher": f"{teacher_meta['name']}:{teacher_meta['version']}",
        "metrics": version.metrics,
        "teacher_metrics": version.meta["lineage"]["teacher_metrics"],
        "postprocessing": version.meta.get("postprocessing"),
        "quantized": None
        if quantized is None
        else {
            "registered": quantized.ref,
            **quantized.meta["quantization"],
            "gates_not_met": quantized.meta["lineage"].get("gates_not_met", []),
        },
        # the teacher's gates the student misses (registered under another name)
        "gates_not_met": version.meta["lineage"].get("gates_not_met", []),
    }
    if as_json:
        from regtune.platform.results.outcome import json_safe

        # A metric without a finite value (NaN) is null: JSON has no NaN.
        sys.stdout.write(json.dumps(json_safe(payload), allow_nan=False) + "\n")
        return
    t_acc = payload["teacher_metrics"].get("test_acc")
    out.print(
        f"registered student [bold]{escape(version.ref)}[/] "
        f"(teacher {escape(str(payload['teacher']))}): "
        f"test_acc {version.metrics['test_acc']:.4f} vs teacher {t_acc:.4f}, "
        f"{version.metrics['n_params']:.0f} parameters",
        markup=True,
        highlight=False,
        soft_wrap=True,
    )
    for missed in payload["gates_not_met"]:
        out.print(
            f"[yellow]warning[/]: {escape(version.ref)} misses its teacher's gate {escape(missed)}",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )
    from regtune.platform.cli.models import postprocessing_table

    post = postprocessing_table(payload["postprocessing"])
    if post is not None:
        out.print(post)
    if quantized is not None:
        q = quantized.meta["quantization"]
        out.print(
            f"registered int8 copy [bold]{escape(quantized.ref)}[/]: "
            f"test_acc {q['int8_test_acc']:.4f}, "
            f"{q['int8_size_bytes']:.0f} bytes of weights (float {q['float_size_bytes']:.0f})",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )
