"""``regtune analyze EXPERIMENT [EXPERIMENT ...]``: paths, front, diagnosis, report.

Reads only the stored results (no Ray), so it works on a copied results
folder. Terminal output is rich tables; ``--json`` prints plain data instead;
``--html FILE`` writes one self-contained report; ``--figures DIR`` writes
every figure as a PNG. When no trial can be best (each failed, is a
constant predictor, or has no value of the objective) a ``no best:`` line
says why, as ``regtune sweep``'s summary does, and an empty Pareto front is
a sentence naming what left each trial out, not a blank table. Bad input (a
missing or empty experiment, an unknown metric, penalty or objective) exits
with status 2 and a message naming what is there; skipped files and
still-running sweeps are reported, not hidden.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from regtune.errors import RegtuneError, SpecError
from regtune.platform.cli.app import app, console, fail, out
from regtune.platform.storage import storage_root

__all__ = ["analyze", "resolve_experiment"]

#: Rows of the front and of the diagnosis examples printed in the terminal.
TERMINAL_ROWS = 10

MSG_BAD_REFERENCE = "--reference: {value!r} is not allowed; allowed: metric=value, e.g. val_acc=0.5"
MSG_BAD_TARGET = "{option} {path}: {reason}; expected {expected}"
MSG_WRITE_FAILED = "{option} {path}: cannot write there ({error})"
#: What each output option expects, for its messages.
_EXPECTED = {
    "--figures": "a folder (created if missing) to write the PNGs into",
    "--html": "a file path such as report.html (its folder is created if missing)",
}


def _check_target(option: str, path: Path, *, folder: bool) -> None:
    """Refuse an output target that cannot work before anything is analysed.

    Raises:
        SpecError: ``path`` is a file where a folder is needed (or the other way
            round), or its nearest existing parent is not a writable folder.
    """
    expected = _EXPECTED[option]
    if path.exists() and path.is_dir() != folder:
        reason = "is a file, not a folder" if folder else "is a folder, not a file"
        raise SpecError(
            MSG_BAD_TARGET.format(option=option, path=path, reason=reason, expected=expected)
        )
    parent = path if folder else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        reason = f"{parent} is a file, so no folder can be made under it"
        raise SpecError(
            MSG_BAD_TARGET.format(option=option, path=path, reason=reason, expected=expected)
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        reason = f"{parent} is not writable"
        raise SpecError(
            MSG_BAD_TARGET.format(option=option, path=path, reason=reason, expected=expected)
        )


def resolve_experiment(name: str, storage: str | None) -> str:
    """``name`` as given when it is a URI or an existing path, else ``<storage>/<name>``
    (storage: ``--storage``, ``$REGTUNE_STORAGE`` or ``~/regtune_runs``)."""
    if "://" in name or Path(name).expanduser().exists():
        return name
    if storage is None and os.sep in name:
        return name
    root = storage_root(storage)
    if "://" in root:
        return f"{root.rstrip('/')}/{name}"
    return str(Path(root) / name)


def _reference(values: list[str] | None) -> dict[str, float] | None:
    if not values:
        return None
    out: dict[str, float] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError(item)
            out[key] = float(raw)
        except ValueError as exc:
            raise SpecError(MSG_BAD_REFERENCE.format(value=item)) from exc
    return out


def _fmt(value: object) -> str:
    """A table cell: floats to 4 significant digits, a missing number (NaN: no
    trial to take a median of) as ``-``."""
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _hanging(marker: str, lines: list[str], style: str = "") -> None:
    """Print each line after ``marker`` (rich markup), wrapped at the terminal's width with
    a hanging indent under the text (a two-column grid: the marker, then the text)."""
    if not lines:
        return
    grid = Table.grid(padding=(0, 1) if marker else 0)
    if marker:
        grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold", style=style)
    for line in lines:
        grid.add_row(*((Text.from_markup(marker),) if marker else ()), Text(line))
    out.print(grid, highlight=False)


def _swept_name(parameter: object) -> str:
    """A swept parameter's name in the header; a seed says it is a replicate."""
    name = str(getattr(parameter, "name", parameter))
    return f"{name} (replicates)" if getattr(parameter, "replicate", False) else name


def _print(analysis: object) -> None:
    from regtune.platform.analysis.run import (
        MSG_NOTHING_TO_DIAGNOSE,
        MSG_NOTHING_TO_DRAW,
        Analysis,
    )

    assert isinstance(analysis, Analysis)  # for mypy; always true here
    out.rule(Text(str(analysis.name or analysis.path), style="bold"))
    out.print(
        f"{analysis.n_trials} trial{'' if analysis.n_trials == 1 else 's'}; "
        f"objective {analysis.objective[0]} ({analysis.objective[1]}); "
        f"swept: {', '.join(_swept_name(p) for p in analysis.swept) or '(none)'}",
        highlight=False,
    )
    _hanging("[yellow]note:[/]", analysis.notes)
    _hanging("[bold green]->[/]", analysis.verdict)
    for name, path in analysis.paths.items():
        title = f"path: {name} vs {analysis.objective[0]}"
        if not (path["metric"] == analysis.objective[0]).any():
            # Every trial was left out (lost stored epochs, ...): a sentence, not an empty table.
            _hanging("", [f"{title}: " + MSG_NOTHING_TO_DRAW.format(n=analysis.n_trials)])
            continue
        table = Table(title=title)
        # Degenerate trials are left out of the medians; a column counts them where any.
        left_out = 0 if analysis.include_degenerate else int(path.attrs.get("n_degenerate", 0))
        failed = int(path.attrs.get("n_failed", 0))
        columns = [
            "strength",
            "n_trials",
            *(["degenerate"] if left_out else []),
            *(["failed"] if failed else []),
        ]
        for column in (*columns, "median", "q25", "q75", "best"):
            table.add_column(column, justify="right")
        part = path[path["metric"] == analysis.objective[0]]
        for row in part.itertuples(index=False):
            table.add_row(
                _fmt(row.strength),
                str(row.n_trials),
                *([str(row.n_degenerate)] if left_out else []),
                *([str(row.n_failed)] if failed else []),
                _fmt(row.median),
                _fmt(row.q25),
                _fmt(row.q75),
                "*" if row.best else "",
            )
        out.print(table)
        under = []
        if left_out:
            under.append(
                f"{left_out} degenerate trial(s) (constant predictors) left out of the "
                "medians and the best; --include-degenerate keeps them"
            )
        if failed:
            under.append(f"{failed} failed trial(s) left out of the medians and the best")
        _hanging("", under)
    empty_front = analysis.empty_front_reason()
    if empty_front is not None:
        _hanging("", [empty_front])
    elif analysis.front is not None:
        front = analysis.front
        names = [m for m, _ in front.objectives]
        table = Table(title="Pareto front")
        table.add_column("trial")
        for name in names:
            table.add_column(name, justify="right")
        for trial_id, row in front.front.head(TERMINAL_ROWS).iterrows():
            table.add_row(str(trial_id), *(_fmt(float(row[n])) for n in names))
        out.print(table)
        reference = ", ".join(f"{k}={v:.4g}" for k, v in front.reference.items())
        # The trials left out, and why, as the HTML report counts them.
        reasons = analysis.excluded_reasons()
        why = f" ({'; '.join(reasons)})" if reasons else ""
        n_excluded = int((front.table["excluded"] != "").sum())
        _hanging(
            "",
            [
                f"{len(front.front)} of {len(front.table)} trials on the front, "
                f"{len(front.dominated)} dominated, {n_excluded} excluded{why}; "
                f"hypervolume {front.hypervolume:.4g} vs reference {reference}"
            ],
        )
    if analysis.diagnosis.empty:
        _hanging("", ["diagnosis: " + MSG_NOTHING_TO_DIAGNOSE.format(n=analysis.n_trials)])
    else:
        _print_diagnosis(analysis)
    if analysis.best is not None:
        _print_best(analysis.best)
    else:
        _hanging("[bold red]no best:[/]", [analysis.no_best_reason() or ""])


def _print_diagnosis(analysis: object) -> None:
    from regtune.platform.analysis.run import Analysis

    assert isinstance(analysis, Analysis)  # for mypy; always true here
    table = Table(title="diagnosis")
    table.add_column("diagnosis")
    table.add_column("trials", justify="right")
    table.add_column("example (evidence)")
    for label, examples in analysis.examples().items():
        count = int((analysis.diagnosis["diagnosis"] == label).sum())
        first = examples[0] if examples else {"trial_id": "", "evidence": ""}
        table.add_row(label, str(count), f"{first['trial_id']}: {first['evidence']}")
    out.print(table)


def _interval(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isnan(low) or math.isnan(high):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _print_best(best: object) -> None:
    """The best trial: its calibration curve and per-group rates as short tables."""
    from regtune.platform.analysis.best import BestTrial, reliability_view

    assert isinstance(best, BestTrial)  # for mypy; always true here
    out.print(f"best trial: [bold]{escape(str(best.trial_id))}[/]", markup=True, highlight=False)
    _hanging(" ", list(best.notes), style="dim")
    if len(best.reliability):
        view = reliability_view(best)
        table = Table(
            title=f"calibration curve ({best.split or 'stored'} split; ECE "
            f"{best.reliability_ece:.4g})"
        )
        for column in view.columns:
            table.add_column(str(column), justify="right")
        for row in view.itertuples(index=False):
            table.add_row(row[0], str(row[1]), *(f"{float(v):.3f}" for v in row[2:]))
        out.print(table)
    if len(best.group_rates):
        rates = best.group_rates
        stats = list(dict.fromkeys(rates["stat"]))
        table = Table(title="per-group rates (value [interval])")
        table.add_column("group")
        for stat in stats:
            split = str(rates.loc[rates["stat"] == stat, "split"].iloc[0])
            table.add_column(f"{split} {stat}".strip(), justify="right")
        for group in dict.fromkeys(rates["group"]):
            cells = []
            for stat in stats:
                hit = rates[(rates["group"] == group) & (rates["stat"] == stat)]
                cells.append(
                    "-"
                    if hit.empty
                    else _interval(*(float(hit[c].iloc[0]) for c in ("value", "ci_low", "ci_high")))
                )
            table.add_row(str(group), *cells)
        out.print(table)


#: The side-by-side table's columns; the cells of those in ``_WHOLE`` are numbers.
_SIDE_COLUMNS = ("experiment", "trials", "best trial", "objective", "hypervolume", "reference")
_WHOLE = frozenset({"trials", "objective", "reference"})
#: Width of a column's border and padding, and of the table's last border.
_CELL_FRAME, _TABLE_FRAME = 3, 1


def _side_by_side(analyses: Sequence[object]) -> Table:
    """Each experiment's trials, best trial and its objective value, hypervolume and the
    reference point it is measured against (each its own experiment's: side by side, never
    compared as one); an empty front shows '-' and why, never 0.

    No cell ends in '…': a cut number (``val_acc=0.7…``) could not be compared with the
    next row's. The numbers (one reference value a line) stay whole on their line while
    the terminal has room for them; the names, trial ids and an empty front's reason fold
    instead (and, on a terminal too narrow even for that, the numbers fold too).
    """
    from regtune.platform.analysis.run import Analysis

    rows: list[tuple[str, ...]] = []
    for a in analyses:
        assert isinstance(a, Analysis)  # for mypy; always true here
        best = a.best.trial_id if a.best is not None else "-"
        value = a.summary.loc[best, a.objective[0]] if a.best is not None else float("nan")
        empty = a.empty_front_reason()
        if a.front is None:
            volume, point = "-", "-"
        elif empty is not None:
            volume, point = f"- ({empty})", "-"
        else:
            volume = _fmt(a.front.hypervolume)
            point = "\n".join(f"{k}={v:.4g}" for k, v in a.front.reference.items())
        rows.append(
            (a.name, str(a.n_trials), best, f"{a.objective[0]}={_fmt(float(value))}", volume, point)
        )
    widths = {
        column: max(
            cell_len(line) for cell in (column, *(r[i] for r in rows)) for line in cell.split("\n")
        )
        for i, column in enumerate(_SIDE_COLUMNS)
    }
    # The other columns fold, each down to its header's longest word at the least.
    words = {c: max(map(cell_len, c.split())) for c in _SIDE_COLUMNS}
    given = {c: widths[c] if c in _WHOLE else words[c] for c in _SIDE_COLUMNS}
    room = out.width - _CELL_FRAME * len(_SIDE_COLUMNS) - _TABLE_FRAME - sum(given.values())
    whole = room >= 0
    # What is left goes to the folding column that lacks the most, a character at a time.
    while whole and room > 0:
        lacking = max(given, key=lambda c: widths[c] - given[c])
        if widths[lacking] <= given[lacking]:
            break
        given[lacking] += 1
        room -= 1
    table = Table(title="side by side (each hypervolume against its own reference)")
    for column in _SIDE_COLUMNS:
        table.add_column(
            column,
            overflow="fold",
            no_wrap=whole and column in _WHOLE,
            width=given[column] if whole else None,
        )
    for row in rows:
        table.add_row(*row)
    return table


@app.command()
def analyze(
    experiments: Annotated[
        list[str],
        typer.Argument(help="Experiment directories (<storage>/<name>), URIs, or names."),
    ],
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")
    ] = None,
    figures_dir: Annotated[
        Path | None,
        typer.Option("--figures", help="Write every figure as a PNG into this folder."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis as JSON.")] = False,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Where experiment names live (default $REGTUNE_STORAGE or ~/regtune_runs)."
        ),
    ] = None,
    objective: Annotated[
        list[str] | None,
        typer.Option(
            "--objective",
            help="metric or metric:min|max (repeatable); the first ranks trials, all span the "
            "front (default: the spec's).",
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", help="Metric drawn along the paths (repeatable; default all)."),
    ] = None,
    penalty: Annotated[
        list[str] | None,
        typer.Option("--penalty", help="Swept parameter to draw a path for (repeatable)."),
    ] = None,
    reference: Annotated[
        list[str] | None,
        typer.Option("--reference", help="Hypervolume reference: metric=value (repeatable)."),
    ] = None,
    include_degenerate: Annotated[
        bool,
        typer.Option(help="Keep constant predictors (degenerate trials) on the front."),
    ] = False,
) -> None:
    """Regularization paths, Pareto front, diagnosis and a report of stored sweeps."""
    from regtune.platform.analysis.compare import distinct_names, spec_differences
    from regtune.platform.analysis.run import analyze_experiment

    try:
        ref = _reference(reference)
        if figures_dir is not None:
            _check_target("--figures", figures_dir, folder=True)
        if html is not None:
            _check_target("--html", html, folder=False)
        analyses = [
            analyze_experiment(
                resolve_experiment(name, storage),
                objectives=objective,
                metrics=metric,
                penalties=penalty,
                reference=ref,
                include_degenerate=include_degenerate,
            )
            for name in experiments
        ]
        # Two folders of the same name (runs/a/quick, runs/b/quick) must not share a
        # column, a legend entry or figure files.
        for analysis, label in zip(
            analyses,
            distinct_names([a.name for a in analyses], [a.path for a in analyses]),
            strict=True,
        ):
            analysis.name = label
        differences = (
            spec_differences({a.name or a.path: a.spec for a in analyses})
            if len(analyses) > 1
            else None
        )
        written: list[str] = []
        if figures_dir is not None or html is not None:
            from regtune.platform.analysis.figures import comparison_figures, figures, write_pngs
            from regtune.platform.analysis.report import write_html

            images: dict[str, bytes] = {}
            for analysis in analyses:
                images.update(figures(analysis))
            images.update(comparison_figures(analyses))
            if figures_dir is not None:
                try:
                    written += [str(p) for p in write_pngs(images, figures_dir).values()]
                except OSError as exc:
                    raise SpecError(
                        MSG_WRITE_FAILED.format(option="--figures", path=figures_dir, error=exc)
                    ) from exc
            if html is not None:
                try:
                    written.append(str(write_html(analyses, html, differences, images)))
                except OSError as exc:
                    raise SpecError(
                        MSG_WRITE_FAILED.format(option="--html", path=html, error=exc)
                    ) from exc
    except RegtuneError as exc:
        raise fail(exc) from exc
    if as_json:
        payload = {
            "experiments": [a.to_dict() for a in analyses],
            "spec_differences": None
            if differences is None
            else differences.reset_index().to_dict(orient="records"),
            "written": written,
        }
        out.print_json(json.dumps(payload))
        return
    if differences is not None:
        table = Table(title="what differs between the specs")
        table.add_column("key")
        for column in differences.columns:
            table.add_column(str(column))
        for key, row in differences.iterrows():
            table.add_row(str(key), *(str(v) for v in row))
        out.print(table if len(differences) else "the specs are identical")
        out.print(_side_by_side(analyses))
    for analysis in analyses:
        _print(analysis)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
