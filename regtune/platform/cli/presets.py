"""``regtune presets``: the sweep presets shipped with regtune, one a line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from regtune.platform.cli.app import app, out

__all__ = ["presets"]


@app.command()
def presets(
    names_only: Annotated[
        bool, typer.Option("--names", help="Print only the names, one a line.")
    ] = False,
) -> None:
    """List the presets (use a name as SPEC in train/sweep/submit) with what each answers."""
    from regtune.search_spaces import preset_descriptions

    descriptions = preset_descriptions()
    if names_only:
        for name in descriptions:
            out.print(name, highlight=False)
        return
    table = Table(box=None, show_header=True, pad_edge=False)
    table.add_column("preset", no_wrap=True, style="bold")
    table.add_column("description")
    for name, text in descriptions.items():
        table.add_row(name, text)
    out.print(table)
