"""The ``regtune`` command line (typer + rich).

Commands::

    regtune train SPEC [--set key=value ...] [--json]   one run, no Ray
    regtune sweep SPEC [--address A] [--storage S] [--name N] [--resume]
    regtune submit SPEC [--address http://HOST:8265]     the same, as a Ray job
    regtune data fetch NAME [--force]                    cache a built-in dataset
    regtune data list                                    built-in datasets
    regtune quickstart                                   the README's default job (a sweep)

Every bad value exits with status 2 and one message naming the option or key,
the value and what is allowed; nothing already stored is touched. Each
command is a module here named for it; importing this package registers them.
"""

from __future__ import annotations

from regtune.platform.cli import data, submit, sweep, train  # noqa: F401  (registers commands)
from regtune.platform.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
