"""``regtune models``: list, show, diff and quantize registered model versions."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from regtune.errors import CheckpointError, RegtuneError
from regtune.platform.cli.app import HELP_MARKUP, app, console, fail, out

if TYPE_CHECKING:
    from regtune.trainables.config import ModelConfig

__all__ = [
    "DAMAGED_EXIT",
    "JsonOpt",
    "StorageOpt",
    "list_table",
    "member_label",
    "models_app",
    "postprocessing_table",
]

models_app = typer.Typer(
    help="Registered model versions.", no_args_is_help=True, rich_markup_mode=HELP_MARKUP
)
app.add_typer(models_app, name="models")

#: Options the registry commands share.
StorageOpt = Annotated[
    str | None,
    typer.Option(
        help="Storage root holding the registry, a path or URI such as s3://bucket/runs "
        "(default: $REGTUNE_STORAGE)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
RefArg = Annotated[str, typer.Argument(help="NAME (latest), NAME:VERSION or a version directory.")]

#: ``models list``'s exit status when a model's latest version is damaged (every
#: model is still listed; 2 stays bad input, as for every command).
DAMAGED_EXIT = 1
#: Metrics shown by ``list`` and first by ``show``.
KEY_METRICS = ("test_acc", "test_ece", "test_dp_diff", "gap", "size_bytes")
#: ``models list`` columns in display order, and the order they are kept in
#: when the terminal is narrow (``model`` is NAME:LATEST and always shown).
LIST_COLUMNS = ("model", "versions", "kind", "created", *KEY_METRICS)
LIST_PRIORITY = ("model", "versions", "test_acc", "kind", "test_ece", "gap", "created",
                 "test_dp_diff", "size_bytes")  # fmt: skip


def _meta(ref: str, storage: str | None) -> dict[str, Any]:
    """A version's meta.json, checked as the version's loading checks it before
    the weights are read (:func:`~regtune.platform.registry.meta_checks.read_servable`):
    every file it lists (size and sha256), that it records the version ``ref``
    names, its fields and its post-processing: the fields shown here included.
    No torch, and the module is not built.

    Raises:
        SpecError: a malformed reference, an unknown model or version.
        CheckpointError: a missing, truncated or modified file, or a malformed
            field (named, with what is allowed, in :data:`~.meta_checks.BAD_FIELD`'s words).
    """
    # Torch-free modules: a look-up (or a typo) answers without importing torch.
    from regtune.platform.registry.location import registry_root, resolve_ref
    from regtune.platform.registry.meta_checks import read_servable

    directory, name, number = resolve_ref(ref, registry_root(storage))
    where = directory.display()
    meta = read_servable(directory, name, number)
    meta["path"] = where
    return meta


def member_label(model: ModelConfig) -> str:
    """A member's architecture as ``models show`` prints it, naming only the
    settings its network uses: ``logreg``; ``mlp w128 d2``; ``cnn w128`` (a
    CNN's dense layer is ``width`` wide; ``depth`` is ignored)."""
    if model.arch == "logreg":
        return "logreg"
    if model.arch == "cnn":
        return f"cnn w{model.width}"
    return f"{model.arch} w{model.width} d{model.depth}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "-"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def postprocessing_table(post: Any) -> Table | None:
    """A version's temperatures and thresholds (or threshold lottery: each
    threshold with its weight), one row per group (None: it has none)."""
    if not isinstance(post, dict):
        return None
    groups = list(post.get("groups") or [])
    temps, cuts = post.get("temperatures"), post.get("thresholds")
    settings = post.get("settings") or {}
    constraint = settings.get("constraint") or {}
    source = (post.get("record") or {}).get("source") or {}
    title = (
        f"post-processing (calibration {settings.get('calibration', 'none')}"
        + (f", {constraint['kind']} within {constraint['tolerance']:.4g}" if constraint else "")
        + f"; temperatures: {source.get('temperatures') or '-'}"
        + f", thresholds: {source.get('thresholds') or '-'})"
    )
    table = Table(title=title)
    for column in ("group", "temperature", "threshold"):
        table.add_column(column, justify="left" if column == "group" else "right")
    per_group = isinstance(temps, list) and len(temps) > 1
    lottery = post.get("lottery") if isinstance(post.get("lottery"), dict) else None
    for code, group in enumerate(groups):
        temp = (temps[code] if per_group else temps[0]) if temps else None
        cut = cuts[code] if isinstance(cuts, list) else None
        decide = _fmt(cut) if cut is not None else "arg-max"
        if lottery is not None:  # "lottery 0.31 (0.25), 0.52 (0.75)": threshold (weight)
            pairs = zip(lottery["thresholds"][code], lottery["weights"][code], strict=True)
            decide = "lottery " + ", ".join(f"{_fmt(c)} ({_fmt(w)})" for c, w in pairs)
        table.add_row(group, _fmt(temp), decide)
    fallback = post.get("fallback_temperature") if per_group else (temps[0] if temps else None)
    table.add_row("(unknown group)" if groups else "(all rows)", _fmt(fallback), "arg-max")
    return table


def _cells(row: dict[str, Any]) -> dict[str, str]:
    created = str(row["created_at"] or "-")
    # ISO time to the minute ("2026-12-01T04:48:46+00:00" -> "2026-12-01 04:48").
    short = created[:16].replace("T", " ") if len(created) >= 16 else created
    metrics = {k: _fmt_short(row["metrics"][k]) for k in KEY_METRICS}
    return {
        "model": f"{row['name']}:{row['latest']}" + (" (damaged)" if row.get("error") else ""),
        "versions": str(len(row["versions"])),
        "kind": _fmt(row["kind"]),
        "created": short,
        **metrics,
    }


def _fmt_short(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    if isinstance(value, float):
        return f"{value:.0f}"
    return _fmt(value)


def list_table(rows: list[dict[str, Any]], root: str, *, width: int) -> Table:
    """``models list`` as a table no wider than ``width``: no cell is cut.

    Columns are taken in :data:`LIST_PRIORITY` order while they fit and shown
    in :data:`LIST_COLUMNS` order; the ones left out are named in the caption
    (``--json`` or a wider terminal shows them).
    """
    cells = [_cells(row) for row in rows]

    def needed(column: str) -> int:
        # A cell's padding and border take 3 characters beside its text.
        return max([len(column), *(len(c[column]) for c in cells)]) + 3

    used, shown = 1, set()
    for column in LIST_PRIORITY:
        if column == "model" or used + needed(column) <= width:
            shown.add(column)
            used += needed(column)
    hidden = [c for c in LIST_COLUMNS if c not in shown]
    caption = f"not shown at this width: {', '.join(hidden)} (see --json)" if hidden else None
    table = Table(title=f"models in {root}", caption=caption)
    for column in (c for c in LIST_COLUMNS if c in shown):
        right = column in KEY_METRICS or column == "versions"
        table.add_column(column, justify="right" if right else "left", no_wrap=True)
    for row in cells:
        table.add_row(*(row[c] for c in LIST_COLUMNS if c in shown))
    return table


def _emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")


def _list_row(name: str, versions: list[int], storage: str | None) -> dict[str, Any]:
    """``models list``'s row of ``name`` (its latest version's kind, time and key
    metrics); ``error``: why the latest version is damaged (None: it is not), in
    the words ``models show`` refuses it with, its other values then None."""
    row: dict[str, Any] = {"name": name, "versions": versions, "latest": versions[-1]}
    try:
        meta = _meta(f"{name}:{versions[-1]}", storage)
    except CheckpointError as exc:
        return {
            **row,
            "kind": None,
            "created_at": None,
            "metrics": dict.fromkeys(KEY_METRICS),
            "error": str(exc),
        }
    return {
        **row,
        "kind": meta.get("kind", "single"),
        "created_at": meta.get("created_at"),
        "metrics": {k: meta.get("metrics", {}).get(k) for k in KEY_METRICS},
        "error": None,
    }


@models_app.command("list")
def list_(storage: StorageOpt = None, as_json: JsonOpt = False) -> None:
    """Every registered model with its latest version and key metrics.

    A model whose latest version is damaged (a file missing or modified, a
    malformed meta.json field: what ``models show`` refuses) is listed marked
    "(damaged)" with the others, its error printed on stderr; the command then
    exits 1.
    """
    from regtune.platform.registry.location import list_models, list_versions, registry_root

    try:
        root = registry_root(storage)
        rows = [
            _list_row(name, list_versions(name, root=root), storage)
            for name in list_models(root=root)
        ]
    except RegtuneError as exc:
        raise fail(exc) from exc
    if as_json:
        _emit_json({"registry": root, "models": rows})
    elif not rows:
        # Said plainly: an empty table hides a typo'd --storage.
        out.print(f"no models registered under {root}", highlight=False, soft_wrap=True)
    else:
        out.print(list_table(rows, root, width=out.width))
    damaged = [row for row in rows if row["error"] is not None]
    for row in damaged:
        console.print(
            f"error: {row['name']}:{row['latest']} is damaged: {row['error']}",
            highlight=False,
            soft_wrap=True,
        )
    if damaged:
        raise typer.Exit(code=DAMAGED_EXIT)


@models_app.command()
def show(ref: RefArg, storage: StorageOpt = None, as_json: JsonOpt = False) -> None:
    """One version: identity, data, members, metrics and lineage."""
    from regtune.trainables.config import ModelConfig

    try:
        meta = _meta(ref, storage)
    except RegtuneError as exc:
        raise fail(exc) from exc
    if as_json:
        _emit_json({k: v for k, v in meta.items() if k != "reference"})
        return
    head = Table(title=f"{meta['name']}:{meta['version']}", show_header=False)
    head.add_column("field")
    head.add_column("value")
    dataset = meta["dataset"]  # an object, and each member's model valid: _meta checked them
    models = [ModelConfig.model_validate(m["model"]) for m in meta["architecture"]["members"]]
    for field, value in (
        ("path", meta["path"]),
        ("kind", meta.get("kind")),
        ("created", meta.get("created_at")),
        ("members", ", ".join(member_label(m) for m in models)),
        ("quantization", meta.get("quantization")),
        ("classes", ", ".join(str(c) for c in meta["classes"])),
        ("input shape", meta.get("input_shape")),
        ("dataset", f"{dataset.get('name')} ({str(dataset.get('fingerprint'))[:12]})"),
        ("code", meta.get("code")),
    ):
        head.add_row(field, _fmt(value))
    out.print(head)
    metrics = Table(title="metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for key in sorted(meta.get("metrics", {})):
        metrics.add_row(key, _fmt(meta["metrics"][key]))
    out.print(metrics)
    post = postprocessing_table(meta.get("postprocessing"))
    if post is not None:
        out.print(post)
    lineage = Table(title="lineage")
    lineage.add_column("key")
    lineage.add_column("value")
    for key, value in meta.get("lineage", {}).items():  # an object: _meta checked it
        lineage.add_row(key, _fmt(value))
    out.print(lineage)


@models_app.command()
def diff(
    a: Annotated[str, typer.Argument(help="First version, NAME:VERSION.")],
    b: Annotated[str, typer.Argument(help="Second version, NAME:VERSION.")],
    storage: StorageOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed from A to B: config, metrics, lineage."""
    from regtune.platform.registry.diff import diff_meta

    try:
        left, right = _meta(a, storage), _meta(b, storage)
    except RegtuneError as exc:
        raise fail(exc) from exc
    changes = diff_meta(left, right)
    label_a, label_b = f"{left['name']}:{left['version']}", f"{right['name']}:{right['version']}"
    if as_json:
        _emit_json(
            {
                "a": label_a,
                "b": label_b,
                "changes": {
                    s: [{"key": k, "a": va, "b": vb} for k, va, vb in rows]
                    for s, rows in changes.items()
                },
            }
        )
        return
    if not changes:
        out.print(f"{label_a} and {label_b} have the same config, metrics and lineage")
        return
    for section, rows in changes.items():
        table = Table(title=section)
        table.add_column("key")
        table.add_column(label_a, justify="right")
        table.add_column(label_b, justify="right")
        for key, va, vb in rows:
            table.add_row(key.removeprefix(f"{section}."), _fmt(va), _fmt(vb))
        out.print(table)


@models_app.command()
def quantize(
    ref: RefArg,
    name: Annotated[
        str | None, typer.Option("--as", help="Register under this name (default: the same model).")
    ] = None,
    storage: StorageOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an int8 dynamically quantized copy of a version, with accuracy and size."""
    from regtune.platform.registry.location import registry_root
    from regtune.platform.registry.quantize import quantize_version

    try:
        version = quantize_version(ref, name=name, root=registry_root(storage))
    except RegtuneError as exc:
        raise fail(exc) from exc
    q = version.meta["quantization"]
    if as_json:
        _emit_json({"registered": version.ref, "path": version.path, **q})
        return
    out.print(
        f"registered [bold]{escape(version.ref)}[/] ({q['scheme']}): "
        f"test_acc {q['int8_test_acc']:.4f} "
        f"(float {q['float_test_acc']:.4f}), weights {q['int8_size_bytes']:.0f} bytes "
        f"(float {q['float_size_bytes']:.0f})",
        markup=True,
        highlight=False,
        soft_wrap=True,
    )
