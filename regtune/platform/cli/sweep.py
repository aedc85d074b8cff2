"""``regtune sweep``: a sweep on Ray Tune and its summary.

The summary is a table of the best trials (at most :data:`SUMMARY_ROWS`, best
first, and one line counting the others), then the ``regtune train`` line
that reproduces the best configuration and where the results are; ``--json``
lists every trial. The table is printed in full when the terminal is wide
enough; on a narrow one
(80 columns) trial ids are cut to the part that tells them apart and
parameters to the last part of their key that is unique (``penalties.l2``
-> ``l2``), and cells wrap rather than end in ``…``.
"""

from __future__ import annotations

import io
import json
import math
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from regtune.errors import RegtuneError, cut_echo
from regtune.platform.cli.app import NameOpt, SetOpt, SpecArg, app, console, fail, out
from regtune.platform.results.trials import NOT_STARTED, RUNNING

if TYPE_CHECKING:
    from regtune.platform.results import SweepOutcome

__all__ = [
    "CONSTANT_LEFT_OUT",
    "CONSTANT_MARK",
    "INTERRUPTED",
    "INTERRUPTED_EXIT",
    "NOT_STARTED",
    "STARTING_RAY",
    "SUMMARY_ROWS",
    "TIME_LIMIT_ENDED",
    "SweepDisplay",
    "best_command",
    "progress_display",
    "resume_command",
    "short_ids",
    "short_names",
    "summary_table",
    "sweep",
]


@app.command()
def sweep(
    spec: SpecArg,
    set_: SetOpt = None,
    address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster ('auto', host:port); default: local.")
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="Results root: a path or s3:// / gs:// URI.")
    ] = None,
    name: NameOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted experiment.")] = False,
    dashboard: Annotated[
        bool, typer.Option(help="Start the Ray dashboard with a local Ray (127.0.0.1).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also show Ray's and Tune's own messages.")
    ] = False,
) -> None:
    """Run an early-stopped sweep on Ray Tune and print a summary table."""
    from regtune.platform.tune.runtime import set_verbose
    from regtune.platform.tune.sweep import finished_experiment, resolve_name, run_sweep
    from regtune.search_spaces import load_spec

    overrides = set_ or []
    set_verbose(verbose)
    try:
        # A resume continues a sweep that ran: its spec is read as one that ran
        # (rules added since for new input, e.g. asha's rung below max_epochs, do not
        # strand an experiment an earlier regtune started).
        loaded = load_spec(spec, overrides, stored=resume)
        # The one naming rule (a new <spec>-<time>-<hex>, or with --resume the
        # newest experiment of the spec), decided before Ray starts.
        name = resolve_name(loaded, name=name, resume=resume, storage=storage)
        done = finished_experiment(name, storage=storage) if resume else None
        if done is not None:
            console.print(
                f"--resume: nothing left to resume: every trial of {name} ended "
                f"({len(done.trials)} trials) and the searcher has none left; "
                "the stored summary follows",
                highlight=False,
                soft_wrap=True,
            )
            _show(done, spec, overrides, as_json=as_json, loaded=loaded)
            return
        n_trials = loaded.n_trials
        header = (
            f"[bold]sweep[/] {escape(name)}{' (resumed)' if resume else ''}: {n_trials} "
            f"trial{'' if n_trials == 1 else 's'}, scheduler {loaded.scheduler.kind}, "
            f"searcher {loaded.searcher.kind}"
        )
        unfinished: list[str] = []
        with progress_display(console, quiet=as_json) as show:

            def starting() -> None:
                # Only once every check passed: a refused sweep never looks started.
                console.print(header, markup=True)
                if show is not None:
                    show.starting_ray(ray_start_text(address))

            outcome = run_sweep(
                loaded,
                address=address,
                storage=storage,
                name=name,
                resume=resume,
                dashboard=dashboard,
                on_progress=show,
                on_ray_start=starting,
                on_interrupt=unfinished.extend,
            )
    except RegtuneError as exc:
        raise fail(exc) from exc
    _show(outcome, spec, overrides, as_json=as_json, loaded=loaded, interrupted=bool(unfinished))
    if unfinished:
        command = resume_command(
            spec, overrides, name=name, storage=storage, address=address, verbose=verbose
        )
        console.print(
            interrupted_line(outcome, name=name, command=command),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(INTERRUPTED_EXIT)


#: Said (on stderr) after the summary of a sweep interrupted by Ctrl+C (SIGINT).
INTERRUPTED = (
    "interrupted: sweep {name} stopped with {n} trial{s} unfinished (stored as running)"
    "{waiting}; continue it with:\n  {command}"
)
#: The same when no trial had reported an epoch yet.
INTERRUPTED_BEFORE_ANY = (
    "interrupted: sweep {name} stopped before any trial reported an epoch{waiting}; "
    "continue it with:\n  {command}"
)


def interrupted_line(outcome: SweepOutcome, *, name: str, command: str) -> str:
    """INTERRUPTED for ``outcome``: the trials it holds running (cut off mid-run)
    and, apart, those Tune had created but not started (the summary's counts)."""
    counts = outcome.counts()
    running, waiting = counts.get(RUNNING, 0), counts.get(NOT_STARTED, 0)
    shown = f" ({waiting} not started)" if not running else f", {waiting} not started"
    template = INTERRUPTED if running else INTERRUPTED_BEFORE_ANY
    return template.format(
        name=name,
        n=running,
        s="" if running == 1 else "s",
        waiting=shown if waiting else "",
        command=command,
    )


#: The exit status of an interrupted sweep (128 + SIGINT, as a shell reports it).
INTERRUPTED_EXIT = 130


def resume_command(
    spec: str,
    overrides: Sequence[str],
    *,
    name: str,
    storage: str | None = None,
    address: str | None = None,
    verbose: bool = False,
) -> str:
    """The ``regtune sweep ... --resume`` line that continues experiment ``name``
    (the same spec, ``--set`` overrides, ``--storage`` and ``--address``),
    quoted for a POSIX shell."""
    words = ["regtune", "sweep", spec]
    for override in overrides:
        words += ["--set", override]
    if storage is not None:
        words += ["--storage", storage]
    if address is not None:
        words += ["--address", address]
    words += ["--name", name, "--resume"]
    if verbose:
        words.append("--verbose")
    return " ".join(shlex.quote(w) for w in words)


def _show(
    outcome: Any,
    spec: str,
    overrides: Sequence[str],
    *,
    as_json: bool,
    loaded: Any = None,
    interrupted: bool = False,
) -> None:
    """The summary on stdout: JSON (``--json``) or the table and lines;
    ``loaded`` is the validated spec (its trial count and time limit);
    ``interrupted``: Ctrl+C ended the sweep (not its time limit)."""
    if as_json:
        sys.stdout.write(json.dumps(_outcome_json(outcome, spec, overrides)) + "\n")
        return
    # An interrupted sweep was not ended by its time limit, whatever it lacks.
    limit = loaded.budget.time_limit_s if loaded is not None and not interrupted else None
    requested = loaded.n_trials if loaded is not None else None
    print_summary(
        outcome,
        spec=spec,
        overrides=overrides,
        console=out,
        time_limit_s=limit,
        requested=requested,
    )


class SweepDisplay:
    """What ``regtune sweep`` shows while it runs: :meth:`starting_ray` when Ray is
    actually being started (never before a refusal), then each progress snapshot
    (call it with the snapshot: it is ``run_sweep``'s ``on_progress``)."""

    def __init__(
        self, show: Callable[[dict[str, Any]], None], starting: Callable[[str], None]
    ) -> None:
        self._show = show
        self._starting = starting

    def __call__(self, snap: dict[str, Any]) -> None:
        self._show(snap)

    def starting_ray(self, text: str = "") -> None:
        """Say that Ray is being started or joined (``run_sweep``'s
        ``on_ray_start``): ``text``, by default :data:`STARTING_RAY`."""
        self._starting(text or STARTING_RAY)


#: The table's mark of a constant predictor (``degenerate`` in the results store).
CONSTANT_MARK = "constant predictor"
#: Said under the best line when some trials were constant predictors.
CONSTANT_LEFT_OUT = (
    "{n} trial{s} marked constant predictor (one class for every row): never best, nor on the front"
)

#: Said under the counts when ``budget.time_limit_s`` ended the sweep before
#: every trial the spec asks for had trained.
TIME_LIMIT_ENDED = (
    "budget.time_limit_s ({limit:g} s) ended the sweep: {started} of the {requested} "
    "trials the spec asks for started{unstarted}; raise budget.time_limit_s to run them all"
)

#: What the display says while Ray is being started.
STARTING_RAY = "starting Ray ..."
#: What it says instead while an existing cluster is being joined (``--address``).
JOINING_RAY = "joining the Ray cluster at {address} ..."
#: ... and while ``--address auto`` (or a Ray job's own cluster) is being joined.
JOINING_AUTO = "joining the Ray cluster (address auto) ..."


def ray_start_text(address: str | None) -> str:
    """What the display says just before Ray is started (no ``--address``) or
    a cluster is joined (:func:`~regtune.platform.tune.runtime.cluster_to_join`)."""
    from regtune.platform.tune.runtime import cluster_to_join

    target = cluster_to_join(address)
    if target is None:
        return STARTING_RAY
    if target == "auto":
        return JOINING_AUTO
    return JOINING_RAY.format(address=escape(cut_echo(target)))


#: Trials in the summary table: the best ones, ranked as the "best by" line ranks
#: them. A sweep of thousands of trials stays a screenful, and only these rows are
#: laid out (rich measures every cell it prints: 10,000 rows took ~47 CPU-s).
SUMMARY_ROWS = 20
#: The line under a table that left trials out; ``{among}`` counts the failed,
#: constant-predictor and Pareto-front trials among them (when there are any).
MORE_TRIALS = "... {n} more trial{s}{among}: regtune analyze {path}; --json lists every trial"


@contextmanager
def progress_display(console: Console, *, quiet: bool = False) -> Iterator[SweepDisplay | None]:
    """The display of :func:`run_sweep` (its ``on_progress`` and ``on_ray_start``)
    on ``console``.

    A terminal gets one status line that updates in place; anything else (a
    CI log, ``tee``, a file) gets a plain line every
    :data:`~regtune.platform.tune.progress.LINE_PERIOD_S` seconds and a last
    one at the end. "starting Ray ..." is shown only when the sweep starts
    Ray (:meth:`SweepDisplay.starting_ray`), so a refusal is not preceded by
    it. ``quiet`` (``--json``) shows nothing.
    """
    from regtune.platform.tune.progress import PeriodicLines, progress_text

    if quiet:
        yield None
        return
    if console.is_terminal:
        with console.status("checking the sweep ...") as status:
            yield SweepDisplay(
                lambda snap: status.update(progress_text(snap)),
                status.update,
            )
        return
    lines = PeriodicLines(lambda text: console.print(text, highlight=False, soft_wrap=True))
    try:
        yield SweepDisplay(lines, lambda text: console.print(text, highlight=False))
    finally:
        lines.close()


def print_summary(
    outcome: Any,
    *,
    spec: str,
    overrides: Sequence[str],
    console: Console,
    time_limit_s: float | None = None,
    requested: int | None = None,
) -> None:
    """The table of the best :data:`SUMMARY_ROWS` trials and a line counting the
    others (:data:`MORE_TRIALS`), counts, the best trial's ``regtune train`` line (or
    why there is no best: :meth:`~regtune.platform.results.SweepOutcome.no_best_reason`)
    and where the results are.

    A trial that never reported an epoch is counted and shown
    :data:`NOT_STARTED`, not ``stopped early``. With ``time_limit_s`` (the
    spec's ``budget.time_limit_s``) and ``requested`` (the trials the spec
    asks for), a sweep with fewer trials than requested or with a trial that
    never started says that the time limit ended it (:data:`TIME_LIMIT_ENDED`)."""
    order = _order(outcome)
    shown, left_out = order[:SUMMARY_ROWS], order[SUMMARY_ROWS:]
    console.print(_summary_table(outcome, shown, width=console.width))
    if left_out:
        console.print(
            _more_trials(outcome, left_out), highlight=False, markup=False, soft_wrap=True
        )
    n = len(outcome.trials)
    tally = outcome.counts()
    counts = ", ".join(f"{v} {k}" for k, v in sorted(tally.items()))
    console.print(
        f"{n} trial{'' if n == 1 else 's'}{f' ({counts})' if counts else ''} "
        f"in {outcome.elapsed_s:.1f} s",
        highlight=False,
    )
    unstarted = tally.get(NOT_STARTED, 0)
    if time_limit_s is not None and requested is not None and (n < requested or unstarted):
        console.print(
            TIME_LIMIT_ENDED.format(
                limit=time_limit_s,
                started=n - unstarted,
                requested=requested,
                unstarted=f" ({unstarted} more were queued but never started)" if unstarted else "",
            ),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )

    def plain(text: str) -> None:
        # Commands and paths: never wrapped or styled, so they copy and paste.
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    best = outcome.best
    if best is not None:
        metric, _ = outcome.objectives[0]
        value = _fmt(best.objectives[metric])
        plain(f"best by {metric}: trial {best.trial_id} ({metric} {value}); train it again with:")
        plain(f"  {best_command(spec, overrides, best.params)}")
        constant = sum(1 for t in outcome.trials if t.degenerate and t.status != "error")
        if constant:
            plain(CONSTANT_LEFT_OUT.format(n=constant, s="" if constant == 1 else "s"))
    else:
        plain(f"no best: {outcome.no_best_reason()}")
    plain(f"results: {outcome.path}")
    if _has_command("analyze"):
        plain(f"  regtune analyze {shlex.quote(outcome.path)}")


def best_command(spec: str, overrides: Sequence[str], params: dict[str, Any]) -> str:
    """The ``regtune train`` command line that trains ``params`` (a trial's sampled
    values) with the sweep's spec and ``--set`` overrides, quoted for a POSIX shell.

    An override whose key the trial's sampled values set (the same key, or one
    under it: ``--set 'penalties.l2={loguniform: [...]}'``) is left out: the
    sampled value replaces it, so the line says each key once."""
    sampled = [tuple(k.split(".")) for k in params]
    kept = [o for o in overrides if not _superseded(o, sampled)]
    words = ["regtune", "train", spec]
    for text in [*kept, *(f"{k}={_yaml_value(v)}" for k, v in params.items())]:
        words += ["--set", text]
    return " ".join(shlex.quote(w) for w in words)


def _superseded(override: str, sampled: Sequence[tuple[str, ...]]) -> bool:
    """Whether a sampled key is ``override``'s key or a section holding it."""
    from regtune.search_spaces.overrides import parse_override

    try:
        key, _ = parse_override(override)
    except RegtuneError:
        return False
    return any(tuple(key[: len(s)]) == s for s in sampled)


def _yaml_value(value: Any) -> str:
    """``value`` as ``--set`` reads it back (YAML), on one line."""
    if isinstance(value, float) and math.isfinite(value):
        text = repr(value)
        # PyYAML reads 1e-05 as a string: a float needs its dot.
        if "e" in text and "." not in text:
            text = text.replace("e", ".0e")
        return text
    if isinstance(value, str) and yaml.safe_load(value) == value and "\n" not in value:
        return value
    return json.dumps(value)


def _has_command(name: str) -> bool:
    registered = app.registered_commands
    return any((c.name or getattr(c.callback, "__name__", "")) == name for c in registered)


def short_ids(ids: Sequence[str]) -> tuple[list[str], str]:
    """Trial ids without the prefix they all share, and that prefix.

    Tune's ids are ``<experiment hex>_<counter>``: all but the last digits
    are the same in one sweep. What remains is still unique, and is the end
    of the trial's directory name (``trial_<id>``).
    """
    if len(ids) < 2:
        return list(ids), ""
    # Character by character on purpose: ids are not paths.
    prefix = os.path.commonprefix(list(ids))  # noqa: RUF071
    # Each id keeps at least one character.
    prefix = prefix[: min(len(i) for i in ids) - 1] if prefix in ids else prefix
    return [i[len(prefix) :] for i in ids], prefix


def short_names(names: Sequence[str], *, taken: Sequence[str] = ()) -> list[str]:
    """Each dotted key cut to its shortest ending that no other key (nor any of
    ``taken``) has: ``penalties.l2`` -> ``l2``, but ``penalties.fairness.strength``
    and ``penalties.adversarial.strength`` keep their middle part."""
    parts = [n.split(".") for n in names]
    out = []
    for i, p in enumerate(parts):
        for k in range(1, len(p) + 1):
            tail = p[-k:]
            clash = any(j != i and q[-k:] == tail for j, q in enumerate(parts))
            if not clash and ".".join(tail) not in taken:
                break
        out.append(".".join(tail))
    return out


def summary_table(outcome: Any, *, width: int) -> RenderableType:
    """The table of the best :data:`SUMMARY_ROWS` trials (best first) in the fullest
    form that fits ``width`` columns.

    In turn: full trial ids and parameter names; full ids and short names;
    short ids and short names; and if even that is too wide, the columns
    split over several tables stacked one under the other, each starting
    with the trial column, results first and parameters after.
    """
    return _summary_table(outcome, _order(outcome)[:SUMMARY_ROWS], width=width)


def _more_trials(outcome: Any, left_out: Sequence[int]) -> str:
    """:data:`MORE_TRIALS` for the trials (indexes) the table left out."""
    trials = outcome.trials
    front = set(outcome.front)
    failed = sum(1 for i in left_out if trials[i].status == "error")
    constant = sum(1 for i in left_out if trials[i].degenerate and trials[i].status != "error")
    among = [
        (sum(1 for i in left_out if i in front), "on the Pareto front"),
        (failed, "failed"),
        (constant, CONSTANT_MARK + ("" if constant == 1 else "s")),
    ]
    counted = ", ".join(f"{k} {what}" for k, what in among if k)
    n = len(left_out)
    return MORE_TRIALS.format(
        n=n,
        s="" if n == 1 else "s",
        among=f" ({counted})" if counted else "",
        path=shlex.quote(outcome.path),
    )


def _summary_table(outcome: Any, order: Sequence[int], *, width: int) -> RenderableType:
    """:func:`summary_table` of the trials ``order`` (indexes, in row order): only
    these rows are built and measured."""
    for short_id, short_name in ((False, False), (False, True), (True, True)):
        columns, notes = _columns(outcome, order, short_id=short_id, short_name=short_name)
        table = _table(outcome, columns, notes, boxed=not short_name)
        if _natural_width(table) <= width:
            return table
    key, rest = columns[0], columns[1:]
    groups: list[list[_Column]] = [[]]
    for column in rest:
        trial = _table(outcome, [key, *groups[-1], column], [], boxed=False)
        if groups[-1] and _natural_width(trial) > width:
            groups.append([])
        groups[-1].append(column)
    tables = [_table(outcome, [key, *group], [], boxed=False) for group in groups]
    for later in tables[1:]:
        later.title = None
    return Group(*tables, Text("; ".join(notes), style="dim"))


#: A console width no table reaches, to measure a table's natural width.
_UNBOUNDED = 100_000


def _natural_width(table: Table) -> int:
    probe = Console(width=_UNBOUNDED, file=io.StringIO())
    return Measurement.get(probe, probe.options, table).maximum


@dataclass(frozen=True)
class _Column:
    header: str
    cells: list[str]
    right: bool = True


def _order(outcome: Any) -> list[int]:
    """Trial indexes, best first: the trials that can be best in the order that picks
    :attr:`~regtune.platform.results.SweepOutcome.best`
    (:func:`~regtune.platform.results.ranking.best_first`), so the first row is the
    trial the "best by" line names; then degenerate ones in the same order, then
    those without a value, then errors."""
    from regtune.platform.results.ranking import best_first

    trials = outcome.trials
    order: list[int] = []
    for degenerate in (False, True):
        group = [
            i for i, t in enumerate(trials) if t.status != "error" and t.degenerate == degenerate
        ]
        ranked = best_first(
            [{**trials[i].metrics, **trials[i].ranked, **trials[i].objectives} for i in group],
            [trials[i].trial_id for i in group],
            outcome.objectives,
        )
        order += [group[j] for j in ranked]
    placed = set(order)
    rest = [i for i in range(len(trials)) if i not in placed]
    return order + sorted(rest, key=lambda i: (trials[i].status == "error", trials[i].trial_id))


def _columns(
    outcome: Any, order: Sequence[int], *, short_id: bool, short_name: bool
) -> tuple[list[_Column], list[str]]:
    """The table's columns (trial, status, epochs, objectives, front, a note marking
    constant predictors, parameters) with their cells in ``order``, and the notes
    that explain shortened parts."""
    trials = [outcome.trials[i] for i in order]
    params = list(outcome.trials[0].params) if outcome.trials else []
    metrics = [m for m, _ in outcome.objectives]
    ids = [t.trial_id for t in trials]
    notes = []
    if short_id:
        ids, prefix = short_ids(ids)
        if prefix:
            notes.append(f"trial: id after {prefix}")
    if short_name:
        names = short_names(params, taken=[*metrics, "trial", "status", "epochs", "front", "note"])
        metric_headers = metrics
        notes.append("objectives: " + ", ".join(f"{m} {md}" for m, md in outcome.objectives))
    else:
        names = params
        metric_headers = [f"{m} ({md})" for m, md in outcome.objectives]
    columns = [
        _Column("trial", ids, right=False),
        _Column("status", [str(t.status) for t in trials], right=False),
        _Column("epochs", [str(t.iterations) for t in trials]),
    ]
    columns += [
        _Column(h, [_fmt(t.objectives.get(m)) for t in trials])
        for h, m in zip(metric_headers, metrics, strict=True)
    ]
    if any(t.epoch is not None and t.epoch != t.iterations for t in trials):
        # The objectives are not the last epoch's: say which epoch they are.
        at = ["-" if t.epoch is None else str(t.epoch) for t in trials]
        columns.append(_Column("at epoch", at))
        notes.append("objectives at the epoch whose weights each trial keeps")
    if outcome.front:
        front = set(outcome.front)
        columns.append(_Column("front", ["*" if i in front else "" for i in order], right=False))
        if short_name:
            notes.append("* on the Pareto front")
    if any(t.degenerate for t in trials):
        # Ranked like the others but never best: say why in the row itself.
        marks = [CONSTANT_MARK if t.degenerate else "" for t in trials]
        columns.append(_Column("note", marks, right=False))
    columns += [
        _Column(n, [_fmt(t.params.get(p)) for t in trials])
        for n, p in zip(names, params, strict=True)
    ]
    return columns, notes


def _table(outcome: Any, columns: Sequence[_Column], notes: Sequence[str], *, boxed: bool) -> Table:
    title = f"{outcome.name}: {outcome.path}"
    if boxed:
        table = Table(title=title)
    else:
        table = Table(
            title=title, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False
        )
    table.caption = "; ".join(notes) or None
    for column in columns:
        # fold, never "…": a cell too narrow breaks over lines and stays whole.
        table.add_column(
            column.header, justify="right" if column.right else "left", overflow="fold"
        )
    for row in zip(*(c.cells for c in columns), strict=True):
        table.add_row(*row)
    return table


def _outcome_json(outcome: Any, spec: str, overrides: Sequence[str]) -> dict[str, Any]:
    """``sweep --json``: :meth:`~regtune.platform.results.SweepOutcome.to_dict` (one
    source, so a rebuilt outcome prints the same keys), with the best trial's
    ``regtune train`` line added as ``best.command``."""
    data = outcome.to_dict()
    best = outcome.best
    if best is not None and data.get("best") is not None:
        data["best"]["command"] = best_command(spec, overrides, best.params)
    return data


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return "-" if value is None else str(value)
