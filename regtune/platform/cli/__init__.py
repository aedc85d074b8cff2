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
command lives in a module of this package named for it, which registers it on
:data:`regtune.platform.cli.app.app`; importing this package imports them all.
"""

from __future__ import annotations

import importlib
import pkgutil

from regtune.platform.cli.app import app

__all__ = ["app", "main"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"app", "__main__"}:
        importlib.import_module(f"{__name__}.{_module.name}")


def main() -> None:
    """Console-script entry point."""
    app()
