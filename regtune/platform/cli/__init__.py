"""The ``regtune`` command line (typer + rich).

Each command is a module of this package that registers itself on
:data:`regtune.platform.cli.app.app`; ``regtune --help`` lists them: train,
sweep, submit, presets, data, analyze, promote, models, distill, serve and
quickstart (sweep, analyze, promote and serve in one).

Every bad value exits with status 2 and one message naming the option or key,
the value and what is allowed; nothing already stored is touched.
"""

from __future__ import annotations

import importlib
import pkgutil

from regtune.platform.cli.app import app, show_data_warnings

__all__ = ["app", "main"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"app", "__main__"}:
        importlib.import_module(f"{__name__}.{_module.name}")


def main() -> None:
    """Console-script entry point."""
    show_data_warnings()
    app()
