"""``regtune submit``: a sweep as a Ray job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from regtune.errors import RegtuneError
from regtune.platform.cli.app import NameOpt, SetOpt, SpecArg, app, fail

__all__ = ["submit"]


@app.command()
def submit(
    spec: SpecArg,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray dashboard address (default $RAY_API_SERVER_ADDRESS, then $RAY_ADDRESS, "
            "then http://127.0.0.1:8265)."
        ),
    ] = None,
    name: NameOpt = None,
    storage: Annotated[
        str | None, typer.Option(help="Results root on the cluster: path or s3:// / gs:// URI.")
    ] = None,
    set_: SetOpt = None,
    working_dir: Annotated[
        Path | None, typer.Option(help="Directory uploaded with the job (data files, spec).")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE environment variable for the job.")
    ] = None,
    follow: Annotated[bool, typer.Option(help="Stream the job's logs until it ends.")] = True,
    resume: Annotated[
        bool, typer.Option(help="Continue the experiment (--name, or the newest of the spec).")
    ] = False,
) -> None:
    """Submit a sweep to a Ray cluster through the Jobs API; exit with its status.

    Exit status: 0 the job succeeded (or, with --no-follow, was accepted);
    1 it failed or was stopped; 2 nothing was submitted (bad input, no
    cluster); 3 it was submitted but contact was lost while following it
    (it may still be running: the message says how to follow or stop it).
    """
    from regtune.platform.jobs import (
        LOST_CONTACT_EXIT,
        JobContactLost,
        parse_env_vars,
        submit_sweep,
    )

    try:
        outcome = submit_sweep(
            spec,
            address=address,
            name=name,
            storage=storage,
            overrides=set_ or [],
            working_dir=working_dir,
            env_vars=parse_env_vars(env or []),
            follow=follow,
            resume=resume,
            # Plain echo: job logs may contain text rich would read as markup.
            log=typer.echo,
        )
    except JobContactLost as exc:
        fail(exc)  # prints the message; the exit status says the job was submitted
        raise typer.Exit(LOST_CONTACT_EXIT) from exc
    except RegtuneError as exc:
        raise fail(exc) from exc
    raise typer.Exit(outcome.exit_code)
