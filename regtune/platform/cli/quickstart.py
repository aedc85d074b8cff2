"""``regtune quickstart``: the README's default job, end to end.

One command walks the platform's whole path on a built-in default: the
``quickstart`` sweep on a local Ray (results in Parquet), its analysis (tables
and a self-contained HTML report), the best trials promoted as a registered
ensemble, and that version served over HTTP on 127.0.0.1, answering one
request before it shuts down.
"""

from __future__ import annotations

import shlex
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from regtune.platform.cli.analyze import analyze, resolve_experiment
from regtune.platform.cli.app import app, console
from regtune.platform.cli.promote import promote
from regtune.platform.cli.serve import serve
from regtune.platform.cli.sweep import sweep

__all__ = ["MODEL_NAME", "quickstart", "serve_again_command"]

#: The registry name the quickstart's winner is promoted under.
MODEL_NAME = "quickstart"
#: Ensemble members promoted from the sweep's best trials.
TOP_K = 3


def _free_port() -> int:
    """A free TCP port on loopback (8000 may well be taken on a developer machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _step(n: int, text: str) -> None:
    console.print(f"\n[bold cyan]{n}/4[/] {escape(text)}", markup=True, highlight=False)


@app.command()
def quickstart(
    storage: Annotated[
        str | None, typer.Option(help="Results root (default $REGTUNE_STORAGE or ~/regtune_runs).")
    ] = None,
) -> None:
    """The README's default job: sweep, analyze, promote the winner and serve it once."""
    import ray

    from regtune.platform.cli.serve import Ingress
    from regtune.platform.tune.naming import new_experiment_name
    from regtune.serve.app import request_direct_ingress

    # The sweep's own naming rule, decided here because the later steps need it.
    name = new_experiment_name("quickstart")
    console.print(
        "[bold]regtune quickstart[/]: an ASHA + TPE sweep over L2 and dropout of a small MLP "
        "on digits (preset 'quickstart'), its analysis, and the winner served over HTTP",
        markup=True,
    )
    # Serve's direct ingress is read when Ray starts, and the sweep starts it: ask
    # for it first, so the served winner answers on the fast path. A Ray already
    # running in this process (a test's) keeps its own setting: serve by the proxy.
    ingress = Ingress.proxy if ray.is_initialized() else Ingress.direct
    if ingress is Ingress.direct:
        request_direct_ingress()
    _step(1, "sweep")
    sweep(
        "quickstart",
        set_=None,
        address=None,
        storage=storage,
        name=name,
        resume=False,
        dashboard=False,
        as_json=False,
        verbose=False,
    )
    experiment = resolve_experiment(name, storage)
    report = Path(experiment) / "report.html" if "://" not in experiment else Path("report.html")
    _step(2, f"analysis (report: {report})")
    analyze(
        [experiment],
        html=report,
        figures_dir=None,
        as_json=False,
        storage=storage,
        objective=None,
        metric=None,
        penalty=None,
        reference=None,
        include_degenerate=False,
    )
    _step(3, f"promote the best {TOP_K} trials as the ensemble {MODEL_NAME!r}")
    promote(
        experiment,
        name=MODEL_NAME,
        top_k=TOP_K,
        objective=None,
        gate=None,
        storage=storage,
        as_json=False,
    )
    _step(4, f"serve {MODEL_NAME!r} on 127.0.0.1 and answer one request")
    serve(
        MODEL_NAME,
        host="127.0.0.1",
        port=_free_port(),
        canary=None,
        canary_weight=None,
        shadow=None,
        storage=storage,
        address=None,
        batch_size=16,
        batch_wait_ms=2.0,
        replicas=1,
        token_env="REGTUNE_SERVE_TOKEN",
        set_=None,
        once=True,
        request=None,
        output=None,
        write_config=None,
        ingress=ingress,
    )
    console.print(
        f"\n[bold green]done[/]: results and report under {escape(str(experiment))}; "
        f"serve it again with: {escape(serve_again_command(storage))}",
        markup=True,
        highlight=False,
        soft_wrap=True,
    )


def serve_again_command(storage: str | None) -> str:
    """The command that serves the quickstart's model again: with ``--storage``
    when one was given (shell-quoted), else the default root would be searched."""
    words = ["regtune", "serve", MODEL_NAME]
    if storage is not None:
        words += ["--storage", storage]
    return shlex.join(words)
