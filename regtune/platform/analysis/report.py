"""One self-contained HTML report: mail it, open it offline.

Everything is inside the file: figures as base64 PNGs (click one to zoom), the
Pareto front also as an inline SVG whose points show the trial and its values
on hover (``<title>`` tooltips), tables sortable by clicking a header (a few
lines of inline script). No CDN, no external file, no network access.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from regtune import __version__
from regtune.platform.analysis.best import reliability_view
from regtune.platform.analysis.compare import figure_stem
from regtune.platform.analysis.figures import (
    comparison_figures,
    figures,
    heatmap_caption,
    ranked,
)
from regtune.platform.analysis.front import Front
from regtune.platform.analysis.run import MSG_NOTHING_TO_DIAGNOSE, MSG_NOTHING_TO_DRAW, Analysis

__all__ = [
    "MAX_TABLE_ROWS",
    "SVG_MAX_POINTS",
    "SVG_TICKS",
    "front_svg",
    "render_html",
    "write_html",
]

#: Rows shown per table (the full tables are in the Python API and --json).
MAX_TABLE_ROWS = 50
#: Dominated points drawn in the interactive front (a sample beyond this; the front is complete).
SVG_MAX_POINTS = 2000

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}
th{background:#f3f3f3;cursor:pointer}td.t,th.t{text-align:left}
img.fig{max-width:48%;border:1px solid #eee;margin:.3em;cursor:zoom-in}
img.fig.big{max-width:100%;cursor:zoom-out}
.note{background:#fff6d6;border-left:4px solid #e0b000;padding:.4em .8em;margin:.3em 0}
.verdict li{margin:.3em 0}svg .pt:hover{stroke:#000;stroke-width:2}
"""

_SCRIPT = """
document.querySelectorAll('img.fig').forEach(function(img){
  img.addEventListener('click',function(){img.classList.toggle('big');});});
document.querySelectorAll('table.sortable th').forEach(function(th,i){
  th.addEventListener('click',function(){
    var table=th.closest('table'),body=table.tBodies[0];
    var rows=Array.prototype.slice.call(body.rows);var asc=th.dataset.asc!=='1';
    rows.sort(function(a,b){var x=a.cells[th.cellIndex].textContent,
      y=b.cells[th.cellIndex].textContent;var nx=parseFloat(x),ny=parseFloat(y);
      var c=(isNaN(nx)||isNaN(ny))?x.localeCompare(y):nx-ny;return asc?c:-c;});
    rows.forEach(function(r){body.appendChild(r);});th.dataset.asc=asc?'1':'0';});});
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _cell(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{float(value):.4g}"
    return _esc(value)


def _numeric(column: pd.Series) -> bool:
    """A column of numbers (not booleans, not text): shown right-aligned."""
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    values = column.dropna()
    return len(values) > 0 and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        for v in values
    )


def _table(frame: pd.DataFrame, *, index: bool = True, caption: str = "") -> str:
    shown = frame.head(MAX_TABLE_ROWS)
    if index:
        shown = shown.reset_index()
    # Numbers right-aligned (digits line up), text and yes/no left-aligned.
    cls = ["" if _numeric(shown[c]) else ' class="t"' for c in shown.columns]
    head = "".join(f"<th{k}>{_esc(c)}</th>" for c, k in zip(shown.columns, cls, strict=True))
    body = "".join(
        "<tr>" + "".join(f"<td{k}>{_cell(v)}</td>" for v, k in zip(row, cls, strict=True)) + "</tr>"
        for row in shown.itertuples(index=False)
    )
    more = (
        f"<p>showing {MAX_TABLE_ROWS} of {len(frame)} rows</p>"
        if len(frame) > MAX_TABLE_ROWS
        else ""
    )
    cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
    return (
        f'<table class="sortable">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>{more}"
    )


def _img(stem: str, data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<img class="fig" alt="{_esc(stem)}" title="{_esc(stem)} (click to zoom)" '
        f'src="data:image/png;base64,{encoded}">'
    )


#: Ticks per axis of the inline SVG front, at most (matplotlib's "nice" steps).
SVG_TICKS = 6
# Margins of the SVG plot area: left (tick labels + axis title), right, top, bottom.
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 64, 16, 16, 44


def _span(values: np.ndarray) -> tuple[float, float]:
    low, high = float(np.min(values)), float(np.max(values))
    if high == low:  # one value: centre it in a unit-wide axis
        return low - 0.5, high + 0.5
    return low, high


def _ticks(low: float, high: float, integer: bool = False) -> list[float]:
    """Round tick values inside ``[low, high]`` (matplotlib's MaxNLocator; whole numbers
    only when ``integer``)."""
    values = MaxNLocator(nbins=SVG_TICKS, integer=integer).tick_values(low, high)
    tol = 1e-9 * (high - low)
    return [float(v) for v in values if low - tol <= v <= high + tol]


def front_svg(front: Front, width: int = 560, height: int = 400) -> str:
    """The front as an inline SVG scatter with axes, ticks and tick values; each point's
    ``<title>`` names the trial and its values. With one objective, each trial's value
    against its rank (1 = best; :func:`~regtune.platform.analysis.figures.ranked`), not
    the metric against itself."""
    one = len(front.objectives) == 1
    if one:
        table = ranked(front)
        table = table[table["excluded"] == ""]
        (my, dy) = front.objectives[0]
        mx, x_title = "rank", f"trials ranked by {my} (1 = best)"
    else:
        table = front.table[front.table["excluded"] == ""]
        (mx, dx), (my, dy) = front.objectives[0], front.objectives[1]
        x_title = f"{mx} ({dx})"
    on = table[table["on_front"]]
    off = table[~table["on_front"]]
    if len(off) > SVG_MAX_POINTS:
        off = off.sample(SVG_MAX_POINTS, random_state=0)
    both = pd.concat([off, on])
    if both.empty:
        return ""
    x0, x1 = _span(both[mx].to_numpy(dtype=float))
    y0, y1 = _span(both[my].to_numpy(dtype=float))
    left, right, top, bottom = _PAD_L, width - _PAD_R, _PAD_T, height - _PAD_B
    sx = (right - left) / (x1 - x0)
    sy = (bottom - top) / (y1 - y0)
    names = [m for m, _ in front.objectives]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="Pareto front" class="front">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff" stroke="#ccc"/>',
        f'<path class="axis" d="M{left} {top}V{bottom}H{right}" fill="none" stroke="#444"/>',
        f'<text x="{(left + right) / 2}" y="{height - 6}" text-anchor="middle" font-size="12">'
        f"{_esc(x_title)}</text>",
        f'<text x="12" y="{(top + bottom) / 2}" font-size="12" '
        f'transform="rotate(-90 12 {(top + bottom) / 2})" text-anchor="middle">'
        f"{_esc(my)} ({_esc(dy)})</text>",
    ]
    for value in _ticks(x0, x1, integer=one):
        tx = left + (value - x0) * sx
        parts.append(
            f'<line x1="{tx:.1f}" y1="{bottom}" x2="{tx:.1f}" y2="{bottom + 5}" stroke="#444"/>'
            f'<text class="tick x" x="{tx:.1f}" y="{bottom + 17}" text-anchor="middle" '
            f'font-size="10">{value:.4g}</text>'
        )
    for value in _ticks(y0, y1):
        ty = bottom - (value - y0) * sy
        parts.append(
            f'<line x1="{left - 5}" y1="{ty:.1f}" x2="{left}" y2="{ty:.1f}" stroke="#444"/>'
            f'<text class="tick y" x="{left - 8}" y="{ty + 3.5:.1f}" text-anchor="end" '
            f'font-size="10">{value:.4g}</text>'
        )
    for trial_id, row in both.iterrows():
        cx = left + (float(row[mx]) - x0) * sx
        cy = bottom - (float(row[my]) - y0) * sy
        color = "#d62728" if row["on_front"] else "#9e9e9e"
        radius = 5 if row["on_front"] else 3
        label = f"trial {trial_id}" + "".join(f"\n{n} = {float(row[n]):.4g}" for n in names)
        if one:
            label += f"\nrank {int(row['rank'])}"
        label += "\non the front" if row["on_front"] else "\ndominated"
        parts.append(
            f'<circle class="pt" cx="{cx:.1f}" cy="{cy:.1f}" r="{radius}" fill="{color}">'
            f"<title>{_esc(label)}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _section(analysis: Analysis, images: Mapping[str, bytes]) -> str:
    out = [f"<section><h2>{_esc(analysis.name or analysis.path)}</h2>"]
    out.append(
        f"<p>{analysis.n_trials} trial{'' if analysis.n_trials == 1 else 's'}; "
        f"objective {_esc(analysis.objective[0])} "
        f"({_esc(analysis.objective[1])}); swept: "
        f"{_esc(', '.join(p.name for p in analysis.swept) or '(none)')}</p>"
    )
    out += [f'<p class="note">{_esc(n)}</p>' for n in analysis.notes]
    out.append('<h3>Where to look next</h3><ul class="verdict">')
    out += [f"<li>{_esc(line)}</li>" for line in analysis.verdict]
    out.append("</ul>")
    if not analysis.edges.empty:
        out.append(_table(analysis.edges, index=False, caption="best strength vs range swept"))
    out.append("<h3>Regularization paths</h3>")
    for name, path in analysis.paths.items():
        key = f"{figure_stem(analysis.name)}-path-{name}"
        if key in images:
            out.append(_img(key, images[key]))
        main = path[path["metric"] == analysis.objective[0]].drop(columns=["metric"])
        if main.empty:
            # Every trial was left out: a sentence, not a table with no row.
            said = MSG_NOTHING_TO_DRAW.format(n=analysis.n_trials)
            out.append(f'<p class="note">{_esc(f"{name}: {said}")}</p>')
            continue
        out.append(_table(main, index=False, caption=f"{name}: {analysis.objective[0]}"))
    cells = analysis.heatmap
    if cells is not None:
        key = f"{figure_stem(analysis.name)}-heatmap"
        out.append("<h3>Heat map</h3>" + (_img(key, images[key]) if key in images else ""))
        caption = heatmap_caption(cells)
        if caption:
            out.append(f'<p class="note">{_esc(caption)}</p>')
    empty_front = analysis.empty_front_reason()
    if empty_front is not None:
        # No point to draw or list: say what left every trial out instead.
        out.append(f'<h3>Pareto front</h3><p class="note">{_esc(empty_front)}</p>')
    elif analysis.front is not None:
        front = analysis.front
        ref = ", ".join(f"{k} = {v:.4g}" for k, v in front.reference.items())
        out.append(
            f"<h3>Pareto front</h3><p>objectives: "
            f"{_esc(', '.join(f'{m} ({d})' for m, d in front.objectives))}; "
            f"hypervolume <b>{front.hypervolume:.5g}</b> against the reference point "
            f"({_esc(ref)}); "
            f"{len(front.front)} on the front, {len(front.dominated)} dominated, "
            f"{int((front.table['excluded'] != '').sum())} excluded. "
            "Hover a point for its trial.</p>"
        )
        out.append(front_svg(front))
        key = f"{figure_stem(analysis.name)}-front"
        if key in images:
            out.append(_img(key, images[key]))
        out.append(_table(front.front, caption="trials on the front"))
    out.append("<h3>Diagnosis</h3>")
    key = f"{figure_stem(analysis.name)}-diagnosis"
    if key in images:
        out.append(_img(key, images[key]))
    counts = analysis.diagnosis["diagnosis"].value_counts().sort_index().rename("trials")
    if analysis.diagnosis.empty:
        said = MSG_NOTHING_TO_DIAGNOSE.format(n=analysis.n_trials)
        out.append(f'<p class="note">{_esc(said)}</p>')
    else:
        out.append(_table(counts.to_frame(), caption="trials per diagnosis"))
    rows = [
        {"diagnosis": label, "trial": ex["trial_id"], "evidence": ex["evidence"]}
        for label, examples in analysis.examples().items()
        for ex in examples
    ]
    if rows:
        out.append(_table(pd.DataFrame(rows), index=False, caption="examples with evidence"))
    if analysis.best is not None:
        best = analysis.best
        out.append(f"<h3>Best trial: {_esc(best.trial_id)}</h3>")
        out += [f'<p class="note">{_esc(n)}</p>' for n in best.notes]
        for suffix in ("best-curves", "best-calibration", "best-groups"):
            key = f"{figure_stem(analysis.name)}-{suffix}"
            if key in images:
                out.append(_img(key, images[key]))
        if len(best.reliability):
            out.append(
                _table(
                    reliability_view(best),
                    index=False,
                    caption=f"calibration curve ({best.split or 'stored'} split): ECE "
                    f"{best.reliability_ece:.4g} recomputed from the bins",
                )
            )
        if len(best.group_rates):
            out.append(
                _table(
                    best.group_rates.drop(columns=["column"]),
                    index=False,
                    caption="per-group rates with their intervals",
                )
            )
        out.append(_table(best.row.to_frame("value"), caption="metrics at the selected epoch"))
    else:
        out.append(
            f'<h3>Best trial</h3><p class="note"><b>no best:</b> '
            f"{_esc(analysis.no_best_reason() or '')}</p>"
        )
    out.append("</section>")
    return "".join(out)


def render_html(
    analyses: Sequence[Analysis],
    differences: pd.DataFrame | None = None,
    images: Mapping[str, bytes] | None = None,
) -> str:
    """The report for one or several analyses (side by side, with their spec differences).

    ``images``: PNGs already rendered (:func:`~regtune.platform.analysis.figures.figures`
    and ``comparison_figures``, by stem); rendered here when not given.
    """
    if images is None:
        images = {}
        for analysis in analyses:
            images.update(figures(analysis))
        images.update(comparison_figures(analyses))
    names = ", ".join(a.name or a.path for a in analyses)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>regtune analysis: {_esc(names)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>regtune analysis: {_esc(names)}</h1>",
        f"<p>regtune {__version__}; figures and tables are embedded: this file works offline.</p>",
    ]
    if differences is not None and len(analyses) > 1:
        parts.append("<h2>What differs between the specs</h2>")
        parts.append(
            _table(differences, caption="spec keys with different values")
            if not differences.empty
            else "<p>The specs are identical (apart from name and description).</p>"
        )
        parts.append("<h2>Side by side</h2>")
        parts += [_img(stem, data) for stem, data in images.items() if stem.startswith("compare-")]
    parts += [_section(a, images) for a in analyses]
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "".join(parts)


def write_html(
    analyses: Sequence[Analysis],
    path: str | Path,
    differences: pd.DataFrame | None = None,
    images: Mapping[str, bytes] | None = None,
) -> Path:
    """Write :func:`render_html` to ``path`` (parents created); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(analyses, differences, images), encoding="utf-8")
    return target
