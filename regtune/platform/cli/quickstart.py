"""``regtune quickstart``: the README's default job."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from regtune.platform.cli.app import app, console
from regtune.platform.cli.sweep import sweep


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
