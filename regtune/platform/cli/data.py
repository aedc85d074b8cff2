"""``regtune data``: the built-in datasets."""

from __future__ import annotations

from typing import Annotated

import typer

from regtune.errors import RegtuneError
from regtune.platform.cli.app import data_app, fail, out
from regtune.trainables.config import BUILTIN_DATASETS

__all__ = ["data_fetch", "data_list"]


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
        raise fail(exc) from exc
    out.print(str(path))


@data_app.command("list")
def data_list() -> None:
    """List the built-in datasets."""
    for name in BUILTIN_DATASETS:
        out.print(name)
