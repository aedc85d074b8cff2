"""Run a ``regtune`` command in-process at a known terminal width.

The CLI's consoles (``regtune.platform.cli.app.out`` and ``console``) are made once, at
import, and rich reads ``$COLUMNS`` then: a ``COLUMNS`` passed to ``CliRunner`` later does
not change their width (and pytest-xdist's workers export ``COLUMNS=80`` before it is
read). :func:`invoke` sets both consoles' width for the one call and puts back what was
there, so no other test in the same worker sees it.
"""

from __future__ import annotations

from click.testing import Result
from typer.testing import CliRunner

from regtune.platform.cli import app

__all__ = ["WIDE", "invoke"]

#: Wide enough for one table row per line.
WIDE = 200


def invoke(*args: str, width: int = WIDE) -> Result:
    """``regtune *args`` with the terminal ``width`` columns wide for this call only."""
    from regtune.platform.cli.app import console, out

    # The width as set (None: rich works it out from the terminal), not as read: reading
    # it back and setting that would pin a width the console did not have.
    saved = [(each, each._width) for each in (out, console)]
    try:
        for each, _ in saved:
            each.width = width
        return CliRunner().invoke(app, list(args))
    finally:
        for each, was in saved:
            each._width = was
