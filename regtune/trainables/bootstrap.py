"""How uncertain a fairness gap and a group's rate are: intervals over the test rows.

A gap measured on a small group is noisy (Adult's ``adult.test`` has 590
women earning >50K, so one ``eo_diff`` moves by about ±0.02 from sampling
alone). :func:`fairness_intervals` reports, next to the point values, a
central ``CI_LEVEL`` interval of ``dp_diff``, ``eo_diff`` and each group's
selection rate, TPR and FPR, so a sweep or a gate can tell a real gap from noise:

* a group's rate (``k`` of ``n`` rows): the Wilson score interval
  (:func:`wilson_interval`), never of zero width (0 of 8 gives [0, 0.32]);
  a percentile bootstrap would say [0, 0] there;
* a gap: the percentile bootstrap (``BOOTSTRAP_RESAMPLES`` resamples of the
  rows), widened to cover the binomial interval of the gap: for every pair of
  groups, Newcombe's hybrid score interval of their rate difference (built from
  the two Wilson intervals); the gap lies in ``[max of the pairs' low ends,
  max of their high ends]``. ``eo_diff`` takes the larger of its TPR and FPR
  gap, its interval the larger ends. A group with no row of the rate's cell
  (no positives for a TPR) is left out of the point gap, and its unknown rate
  leaves the gap's high end at 1.

:func:`small_cells` lists the cells below :data:`MIN_CELL_ROWS` rows and
:func:`fairness_intervals` logs them as warnings (it refuses nothing).

The resamples are vectorised: each one is a row of multinomial counts
``W`` (how often each row was drawn) and every per-group count is a column of
``W @ M`` for a 0/1 indicator matrix ``M``; no Python loop runs per resample.
Seeded with a ``torch.Generator``: the same inputs and seed give the same
interval. Rates follow :mod:`regtune.trainables.fairness`: a group with no
row of a label is skipped for that rate (its rate is NaN, as are its ends).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from statistics import NormalDist

import torch
from torch import Tensor

from regtune.errors import DataError
from regtune.trainables.metric_names import group_keys

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CI_LEVEL",
    "MIN_CELL_ROWS",
    "SMALL_CELL",
    "fairness_intervals",
    "gap_interval",
    "group_keys",
    "newcombe_interval",
    "resampled_fairness",
    "small_cells",
    "warn_small_cells",
    "wilson_interval",
]

_log = logging.getLogger(__name__)

#: Resamples per interval: the percentile ends of a 95% interval move by well
#: under 0.005 between seeds at 1000 (and the cost on Adult's test split is
#: a fraction of a second).
BOOTSTRAP_RESAMPLES = 1000
#: Central coverage of every reported interval.
CI_LEVEL = 0.95
#: Fewest rows a (group, label) cell should have for a per-group rate or a fairness
#: gap (or a threshold fitted on it) to mean much: at 30 rows a rate near 0.5 has a
#: 95% Wilson interval about ±0.17 wide. Smaller cells are warned about, not refused.
MIN_CELL_ROWS = 30
#: The warning for one small cell (``cell``: "rows", "positives" or "negatives").
SMALL_CELL = (
    "group {group} has {rows} {cell} in {split} (fewer than {minimum}): {use} are unreliable"
)
#: Resamples drawn at once (memory: ``_CHUNK * n_rows`` float32 and int64).
_CHUNK = 128

#: Per-group rates: (name, label the rate conditions on or None, counts needed).
_RATES = (("selection_rate", None), ("tpr", 1), ("fpr", 0))

BAD_INPUTS = (
    "fairness_intervals needs y_true, y_pred and s of one equal, non-zero length; got {shapes}"
)
BAD_LEVEL = "level must be in (0, 1); got {level!r}"
BAD_RESAMPLES = "n_resamples must be a positive integer; got {n!r}"


def wilson_interval(successes: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``successes / n`` (NaN ends when
    ``n == 0``); of non-zero width for every ``n > 0`` (0 of 8: [0, 0.324])."""
    if n <= 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At p = 0 or 1 the end equals p exactly; rounding must not put p outside.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def newcombe_interval(
    a: tuple[int, int], b: tuple[int, int], level: float = CI_LEVEL
) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``p_a - p_b`` for ``(successes, n)`` pairs
    ``a`` and ``b`` (both ``n > 0``), from their Wilson intervals."""
    pa, pb = a[0] / a[1], b[0] / b[1]
    la, ua = wilson_interval(*a, level)
    lb, ub = wilson_interval(*b, level)
    d = pa - pb
    return (
        d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2),
        d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2),
    )


def gap_interval(cells: Sequence[tuple[int, int]], level: float = CI_LEVEL) -> tuple[float, float]:
    """The binomial interval of the gap ``max - min`` of per-group rates, one
    ``(successes, rows)`` cell per group: ``[max over pairs of the Newcombe low end,
    max over pairs of the high end]``, clipped to [0, 1]. A cell without rows leaves
    the high end at 1 (its rate is unknown); fewer than two cells with rows give
    ``(0, 1)`` when some cell is empty, else ``(0, 0)``.
    """
    present = [c for c in cells if c[1] > 0]
    empty = len(present) < len(cells)
    low, high = 0.0, 0.0
    for i, a in enumerate(present):
        for b in present[i + 1 :]:
            for lo, hi in (newcombe_interval(a, b, level), newcombe_interval(b, a, level)):
                low, high = max(low, lo), max(high, hi)
    return min(max(low, 0.0), 1.0), 1.0 if empty else min(high, 1.0)


def small_cells(
    y: Tensor,
    s: Tensor,
    group_names: Sequence[str],
    *,
    labels: bool,
    minimum: int = MIN_CELL_ROWS,
) -> list[tuple[str, str, int]]:
    """The (group, cell, rows) cells with fewer than ``minimum`` rows, in group order.

    ``cell`` is ``"rows"`` (the group's rows; checked when ``labels`` is False, as a
    selection rate or demographic parity needs) or ``"positives"``/``"negatives"``
    (rows of label 1/0 in the group: TPR/FPR, equalized odds). Groups without any
    row are listed too (``0``). ``y``: 0/1 labels; ``s``: group codes.
    """
    y, s = y.detach().cpu().long(), s.detach().cpu().long()
    out: list[tuple[str, str, int]] = []
    for code, name in enumerate(group_names):
        mask = s == code
        if labels:
            counts = [
                ("positives", int((mask & (y == 1)).sum())),
                ("negatives", int((mask & (y == 0)).sum())),
            ]
        else:
            counts = [("rows", int(mask.sum()))]
        out += [(str(name), cell, rows) for cell, rows in counts if rows < minimum]
    return out


def warn_small_cells(
    y: Tensor,
    s: Tensor,
    group_names: Sequence[str],
    *,
    labels: bool,
    split: str,
    use: str,
    minimum: int = MIN_CELL_ROWS,
) -> list[str]:
    """Log a warning (logger ``regtune.trainables.bootstrap``) for each cell of
    :func:`small_cells` and return the messages: ``group Other has 0 positives in
    validation (fewer than 30): the thresholds fitted on it are unreliable``. ``split``
    names the rows (``validation``, ``test``), ``use`` what is made of them."""
    messages = [
        SMALL_CELL.format(
            group=group,
            rows=rows,
            cell=cell[:-1] if rows == 1 else cell,
            split=split,
            minimum=minimum,
            use=use,
        )
        for group, cell, rows in small_cells(y, s, group_names, labels=labels, minimum=minimum)
    ]
    for message in messages:
        _log.warning(message)
    return messages


def _indicators(y_true: Tensor, y_pred: Tensor, s: Tensor, n_groups: int) -> Tensor:
    """(n, 6 * n_groups) 0/1 columns: per rate, group-major, (denominator, numerator)."""
    positive = y_pred == 1
    cols = []
    for _, label in _RATES:
        base = torch.ones_like(positive) if label is None else y_true == label
        for g in range(n_groups):
            den = base & (s == g)
            cols += [den, den & positive]
    # float32 counts are exact below 2**24 rows, and the product twice as fast.
    return torch.stack(cols, dim=1).float()


def _gap(rates: Tensor) -> Tensor:
    """``max - min`` over non-NaN groups along the last axis; 0 with fewer than two."""
    present = ~rates.isnan()
    hi = torch.where(present, rates, -torch.inf).amax(dim=-1)
    lo = torch.where(present, rates, torch.inf).amin(dim=-1)
    return torch.where(present.sum(dim=-1) >= 2, hi - lo, torch.zeros_like(hi))


def _statistics(counts: Tensor, n_groups: int) -> dict[str, Tensor]:
    """Per-group rates and the dp/eo gaps from ``W @ M`` counts (batch, 6 * n_groups)."""
    counts = counts.reshape(counts.shape[0], len(_RATES), n_groups, 2)
    den, num = counts[..., 0], counts[..., 1]
    rates = torch.where(den > 0, num / den.clamp(min=1), torch.nan)
    eo = torch.maximum(_gap(rates[:, 1]), _gap(rates[:, 2]))
    out = {"dp_diff": _gap(rates[:, 0]), "eo_diff": eo}
    for r, (name, _) in enumerate(_RATES):
        for g in range(n_groups):
            out[f"{name}/{g}"] = rates[:, r, g]
    return out


def resampled_fairness(
    y_true: Tensor,
    y_pred: Tensor,
    s: Tensor,
    n_groups: int,
    *,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, Tensor]]:
    """Point values and ``n_resamples`` bootstrap values of every statistic.

    Keys: ``dp_diff``, ``eo_diff`` and ``{selection_rate,tpr,fpr}/{group code}``.
    """
    n = int(y_true.shape[0])
    if not (n > 0 and y_pred.shape[0] == n and s.shape[0] == n):
        shapes = [tuple(t.shape) for t in (y_true, y_pred, s)]
        raise DataError(BAD_INPUTS.format(shapes=shapes))
    if not (isinstance(n_resamples, int) and n_resamples > 0):
        raise ValueError(BAD_RESAMPLES.format(n=n_resamples))
    y_true, y_pred, s = (t.detach().to("cpu").long() for t in (y_true, y_pred, s))
    m = _indicators(y_true, y_pred, s, n_groups)
    totals = m.sum(dim=0, keepdim=True).double()
    point = {k: float(v[0]) for k, v in _statistics(totals, n_groups).items()}
    generator = torch.Generator().manual_seed(seed)
    draws: list[Tensor] = []
    for start in range(0, n_resamples, _CHUNK):
        size = min(_CHUNK, n_resamples - start)
        index = torch.randint(n, (size, n), generator=generator)
        weights = torch.zeros(size, n).scatter_add_(1, index, torch.ones(size, n))
        draws.append((weights @ m).double())
    boot = _statistics(torch.cat(draws), n_groups)
    return point, boot


def fairness_intervals(
    y_true: Tensor,
    y_pred: Tensor,
    s: Tensor,
    group_names: Sequence[str],
    *,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = CI_LEVEL,
    seed: int = 0,
    split: str = "test",
) -> dict[str, float]:
    """Intervals of the fairness metrics of hard predictions (see the module docstring).

    Returns ``dp_diff_ci_low``/``_ci_high``, ``eo_diff_ci_low``/``_ci_high``
    (percentile bootstrap widened to the binomial interval of the gap) and, for
    each group ``G`` (its key among ``group_names``, :func:`group_keys`), the
    point value and Wilson interval of ``selection_rate_G``, ``tpr_G`` and
    ``fpr_G``. A rate whose group never has rows of its label is NaN, as are
    its ends. Cells with fewer than :data:`MIN_CELL_ROWS` rows are logged as
    warnings naming ``split``.

    Raises:
        DataError: the inputs are empty or of different lengths.
        ValueError: ``level`` is not in (0, 1) or ``n_resamples`` is not positive.
    """
    if not 0 < level < 1:
        raise ValueError(BAD_LEVEL.format(level=level))
    point, boot = resampled_fairness(
        y_true, y_pred, s, len(group_names), n_resamples=n_resamples, seed=seed
    )
    warn_small_cells(
        y_true, s, group_names, labels=True, split=split, use="its TPR, FPR and eo_diff"
    )
    warn_small_cells(
        y_true, s, group_names, labels=False, split=split, use="its selection rate and dp_diff"
    )
    cells = _cells(y_true, y_pred, s, len(group_names))
    keys = group_keys(group_names)
    tail = (1 - level) / 2
    q = torch.tensor([tail, 1 - tail], dtype=torch.float64)
    out: dict[str, float] = {}
    binomial = {rate: gap_interval(cells[rate], level) for rate, _ in _RATES}
    tpr, fpr = binomial["tpr"], binomial["fpr"]
    binomial["dp_diff"] = binomial["selection_rate"]
    binomial["eo_diff"] = (max(tpr[0], fpr[0]), max(tpr[1], fpr[1]))
    for key, values in boot.items():
        if "/" in key:
            rate, code = key.split("/")
            name = f"{rate}_{keys[int(code)]}"
            out[name] = point[key]
            low, high = wilson_interval(*cells[rate][int(code)], level)
        else:
            name = key
            low, high = (float(v) for v in torch.nanquantile(values, q))
            floor_low, floor_high = binomial[key]
            low, high = min(low, floor_low), max(high, floor_high)
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
    return out


def _cells(
    y_true: Tensor, y_pred: Tensor, s: Tensor, n_groups: int
) -> dict[str, list[tuple[int, int]]]:
    """Per rate of :data:`_RATES`, each group's (positive decisions, rows) in its cell."""
    y_true, y_pred, s = (t.detach().cpu().long() for t in (y_true, y_pred, s))
    out: dict[str, list[tuple[int, int]]] = {}
    for rate, label in _RATES:
        base = torch.ones_like(s, dtype=torch.bool) if label is None else y_true == label
        cells = []
        for g in range(n_groups):
            den = base & (s == g)
            cells.append((int((den & (y_pred == 1)).sum()), int(den.sum())))
        out[rate] = cells
    return out
