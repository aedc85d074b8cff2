"""The ``regtune`` Typer application, its consoles and the options commands share.

Each command lives in a module of :mod:`regtune.platform.cli` named for it
(``train``, ``sweep``, ``submit``, ``analyze``, ...), which registers it on
:data:`app`; importing that package registers them all, and ``regtune
--help`` lists them.

Every bad value exits with status 2 and one message naming the option or key,
the value and what is allowed; nothing already stored is touched. Results go
to stdout (:data:`out`), progress and errors to stderr (:data:`console`), so
``regtune sweep ... --json > summary.json`` keeps the summary clean.
"""

from __future__ import annotations

import warnings
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.markup import escape

from regtune import __version__

__all__ = [
    "HELP_MARKUP",
    "NameOpt",
    "SetOpt",
    "SpecArg",
    "app",
    "console",
    "data_app",
    "fail",
    "out",
    "show_data_warnings",
]

#: ``--help`` is click's plain layout, not typer's rich panels: typer 0.29's
#: panels show a type after every flag (``--json <bool>``, read as taking a
#: value) and cut long option names at 80 columns (``--include-degenera…``);
#: the plain layout shows flags bare and wraps only the help text. Sub-apps
#: (``models``, ``data``) pass it too.
HELP_MARKUP = None

app = typer.Typer(
    name="regtune",
    help="Find, serve and watch well-regularized models on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MARKUP,
)
data_app = typer.Typer(
    help="Built-in datasets.", no_args_is_help=True, rich_markup_mode=HELP_MARKUP
)
app.add_typer(data_app, name="data")

# markup=False: text from users and data (paths, column and group names, error
# messages) prints as written; a "[/x]" in it is neither a traceback nor lost. The
# few styled lines say markup=True and escape what they interpolate.
console = Console(stderr=True, markup=False)
out = Console(markup=False)

#: Options several commands share, declared once.
SpecArg = Annotated[str, typer.Argument(help="Sweep/training YAML file or preset name.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", metavar="KEY=VALUE", help="Override a key: --set penalties.l2=0.01 (repeatable)."
    ),
]
NameOpt = Annotated[
    str | None,
    typer.Option(
        help="Experiment name (default: a new <spec>-<time>-<hex>; "
        "with --resume, the newest experiment of the spec)."
    ),
]


def fail(exc: Exception) -> typer.Exit:
    """Print ``exc`` as the command's error message; ``raise fail(exc) from exc`` exits with 2."""
    console.print(
        f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True
    )
    return typer.Exit(code=2)


@app.command()
def version() -> None:
    """Print regtune's version."""
    out.print(__version__)


def show_data_warnings() -> None:
    """Print each :class:`~regtune.errors.DataWarning` as one ``warning: ...`` line
    on stderr (Python's default shows ``file:line: DataWarning: ...`` and the
    source line); every other warning keeps Python's format. Called once by the
    console script, so a library user's own warning handling is left alone."""
    from regtune.errors import DataWarning

    default = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, DataWarning):
            console.print(f"warning: {message}", highlight=False, markup=False, soft_wrap=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
