"""Pareto maths for multi-objective sweeps: dominance, NSGA-II ranking, hypervolume, rungs.

Everything here is a pure function on ``numpy`` arrays and knows nothing about
Ray. Points are rows of an ``(n_points, n_objectives)`` array in
**minimisation space**: smaller is better in every column. Use
:func:`to_minimization` (or :func:`objective_vector` for one result dict) to
get there from ``(metric, mode)`` objectives, where ``mode`` is ``"min"`` or
``"max"``.

NaN means "no usable value" (a diverged or broken trial) and makes the whole
point the worst possible one: every function here maps a point with a NaN in
*any* objective to ``+inf`` in *every* objective before comparing. Treating
only the NaN coordinate as worst would keep such a point on the Pareto front
whenever its other objectives are good, and the scheduler would promote a
diverged trial as an "extreme" of the front.

The promotion rule of the ``pareto-asha`` scheduler lives here too
(:func:`rung_levels`, :func:`should_promote`) so that it can be tested on
hand-made rung histories; :mod:`regtune.platform.tune.pareto_asha` only adapts it to
Ray Tune's ``TrialScheduler`` callbacks.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from regtune.errors import SpecError

__all__ = [
    "MODES",
    "Objective",
    "crowding_distance",
    "dominates",
    "hypervolume",
    "non_dominated_mask",
    "non_dominated_sort",
    "objective_vector",
    "pareto_front",
    "pareto_rank_order",
    "rung_levels",
    "should_promote",
    "to_minimization",
    "validate_objectives",
]

Mode = Literal["min", "max"]
#: One objective: the name of a reported metric and the direction that is better.
Objective = tuple[str, Mode]

#: The allowed directions of an objective.
MODES: tuple[Mode, ...] = ("min", "max")

MSG_NO_OBJECTIVES = "objectives: at least one (metric, mode) pair is needed, got {value!r}"
MSG_BAD_OBJECTIVE = "objectives[{index}]: expected a (metric, mode) pair, got {value!r}"
MSG_BAD_METRIC_NAME = "objectives[{index}]: metric must be a non-empty string, got {value!r}"
MSG_BAD_MODE = (
    "objectives[{index}]: mode {value!r} of metric {metric!r} is not allowed; allowed: {allowed}"
)
MSG_DUPLICATE_METRIC = "objectives: metric {metric!r} is listed more than once"
MSG_BAD_MODES = "modes[{index}]: {value!r} is not allowed; allowed: 'min', 'max'"
MSG_MODES_LENGTH = "modes: got {got} modes for {expected} objective columns"
MSG_MISSING_METRIC = "result has no objective {metric!r}; available keys: {available}"
MSG_NOT_NUMERIC = "objective {metric!r}: value {value!r} is not a number"
MSG_POINTS_SHAPE = "{name}: expected a 2-D array (n_points, n_objectives), got shape {shape}"
MSG_VECTOR_SHAPE = "{name}: expected a 1-D vector of {expected} objective values, got shape {shape}"
MSG_REFERENCE_NOT_FINITE = "reference: every coordinate must be finite, got {value}"
MSG_BAD_INT = "{name}: {value!r} is not allowed; allowed: an integer >= {minimum}"
MSG_MAX_T_BELOW_GRACE = (
    "max_t: {max_t!r} is not allowed; allowed: an integer >= grace_period ({grace})"
)
MSG_NEW_INDEX = "new_index: {value!r} is out of range for {n} rung records; allowed: 0..{last}"

# Points compared at once against the front found so far by the sweep of
# :func:`non_dominated_mask` (3+ objectives): a block of this many rows against a
# front of f rows costs a (block x f x d) boolean array; 2048 keeps it a few MB
# for fronts of a few hundred points while amortising numpy's per-call cost.
SWEEP_BLOCK = 2048
# Below this many points the pairwise matrix (O(n^2) memory) is as fast as the sweep.
PAIRWISE_MAX_POINTS = 256
# Three objectives: points compared (vectorised) with this many good points first,
# so that the exact staircase sweep runs in Python over the few survivors only.
PREFILTER_PIVOTS = 64


# --------------------------------------------------------------------------- objectives


def validate_objectives(objectives: Sequence[tuple[str, str]]) -> tuple[Objective, ...]:
    """Check ``(metric, mode)`` pairs and return them as a tuple.

    Raises:
        SpecError: no objectives, a pair that is not ``(str, "min"|"max")``, or a
            metric listed twice.
    """
    if isinstance(objectives, (str, bytes)) or not isinstance(objectives, Sequence):
        raise SpecError(MSG_NO_OBJECTIVES.format(value=objectives))
    if len(objectives) == 0:
        raise SpecError(MSG_NO_OBJECTIVES.format(value=objectives))
    checked: list[Objective] = []
    seen: set[str] = set()
    for index, pair in enumerate(objectives):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise SpecError(MSG_BAD_OBJECTIVE.format(index=index, value=pair))
        metric, mode = pair
        if not isinstance(metric, str) or not metric:
            raise SpecError(MSG_BAD_METRIC_NAME.format(index=index, value=metric))
        if mode not in MODES:
            raise SpecError(
                MSG_BAD_MODE.format(index=index, value=mode, metric=metric, allowed="'min', 'max'")
            )
        if metric in seen:
            raise SpecError(MSG_DUPLICATE_METRIC.format(metric=metric))
        seen.add(metric)
        checked.append((metric, "min" if mode == "min" else "max"))
    return tuple(checked)


def to_minimization(values: ArrayLike, modes: Sequence[str]) -> NDArray[np.float64]:
    """Turn raw objective values into minimisation space.

    ``values`` is one point (1-D) or a matrix of points (2-D, one column per
    mode). Columns whose mode is ``"max"`` are negated; a point with a NaN in
    any column becomes ``+inf`` in every column (the worst point).

    Raises:
        SpecError: a mode other than ``"min"``/``"max"`` or a column count that
            differs from ``len(modes)``.
    """
    array = np.array(values, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise SpecError(MSG_POINTS_SHAPE.format(name="values", shape=array.shape))
    if array.shape[-1] != len(modes):
        raise SpecError(MSG_MODES_LENGTH.format(got=len(modes), expected=array.shape[-1]))
    signs = np.empty(len(modes), dtype=np.float64)
    for index, mode in enumerate(modes):
        if mode not in MODES:
            raise SpecError(MSG_BAD_MODES.format(index=index, value=mode))
        signs[index] = 1.0 if mode == "min" else -1.0
    return _nan_points_to_worst(array * signs)


def objective_vector(
    result: Mapping[str, Any], objectives: Sequence[Objective]
) -> NDArray[np.float64]:
    """Read the objectives of one reported result, in minimisation space.

    A ``None`` or NaN value makes the point the worst one (``+inf`` everywhere).

    Raises:
        SpecError: an objective metric is absent from ``result`` (the message
            lists the keys that are there) or its value is not a number.
    """
    raw = np.empty(len(objectives), dtype=np.float64)
    for index, (metric, _mode) in enumerate(objectives):
        if metric not in result:
            available = ", ".join(sorted(map(str, result))) or "(none)"
            raise SpecError(MSG_MISSING_METRIC.format(metric=metric, available=available))
        value = result[metric]
        if value is None:
            raw[index] = math.nan
        elif isinstance(value, (Real, np.number)) and not isinstance(value, (bool, np.bool_)):
            raw[index] = float(value)
        else:
            raise SpecError(MSG_NOT_NUMERIC.format(metric=metric, value=value))
    return to_minimization(raw, [mode for _metric, mode in objectives])


# --------------------------------------------------------------------------- dominance


def _nan_points_to_worst(array: NDArray[np.float64]) -> NDArray[np.float64]:
    """Set every point (last axis) that has a NaN to ``+inf`` everywhere, in place."""
    array[np.isnan(array).any(axis=-1)] = np.inf
    return array


def _as_points(points: ArrayLike, name: str = "points") -> NDArray[np.float64]:
    """A float copy of a 2-D point matrix, points with a NaN made the worst."""
    array = np.array(points, dtype=np.float64)
    if array.ndim == 1 and array.size == 0:
        return array.reshape(0, 0)
    if array.ndim != 2:
        raise SpecError(MSG_POINTS_SHAPE.format(name=name, shape=array.shape))
    return _nan_points_to_worst(array)


def _as_vector(value: ArrayLike, name: str) -> NDArray[np.float64]:
    """A float copy of one point; NaN is left for the caller to map."""
    vector = np.array(value, dtype=np.float64)
    if vector.ndim != 1:
        raise SpecError(
            MSG_VECTOR_SHAPE.format(name=name, expected="n_objectives", shape=vector.shape)
        )
    return vector


def dominates(a: ArrayLike, b: ArrayLike, modes: Sequence[str] | None = None) -> bool:
    """Whether point ``a`` Pareto-dominates point ``b``.

    ``a`` dominates ``b`` when it is no worse in every objective and strictly
    better in at least one. Without ``modes`` both points are in minimisation
    space; with ``modes`` (``"min"``/``"max"`` per column) they are raw values.
    A point with a NaN is worse than any point without; equal points do not dominate each other.

    Raises:
        SpecError: the points are not 1-D vectors of the same length, or a mode
            is not ``"min"``/``"max"``.
    """
    pa = _as_vector(a, "a")
    pb = _as_vector(b, "b")
    if pa.shape != pb.shape:
        raise SpecError(MSG_VECTOR_SHAPE.format(name="b", expected=pa.size, shape=pb.shape))
    if modes is None:
        pa = _nan_points_to_worst(pa)
        pb = _nan_points_to_worst(pb)
    else:
        pa = to_minimization(pa, modes)
        pb = to_minimization(pb, modes)
    return bool(np.all(pa <= pb) and np.any(pa < pb))


def _domination_matrix(points: NDArray[np.float64]) -> NDArray[np.bool_]:
    """``out[i, j]`` is True when point ``i`` dominates point ``j``."""
    left = points[:, None, :]
    right = points[None, :, :]
    return np.all(left <= right, axis=2) & np.any(left < right, axis=2)


def non_dominated_sort(points: ArrayLike) -> list[NDArray[np.intp]]:
    """Split points into non-dominated fronts (NSGA-II's fast non-dominated sort).

    Returns a list of index arrays: front 0 holds the points no other point
    dominates, front 1 those dominated only by front 0, and so on. Indices in
    each front are ascending. Cost is O(n² · d) time and memory.
    """
    matrix = _as_points(points)
    n = matrix.shape[0]
    if n == 0:
        return []
    dominated_by = _domination_matrix(matrix)
    n_dominators = dominated_by.sum(axis=0)
    remaining = np.ones(n, dtype=bool)
    fronts: list[NDArray[np.intp]] = []
    while remaining.any():
        front = np.flatnonzero(remaining & (n_dominators == 0))
        fronts.append(front)
        remaining[front] = False
        n_dominators = n_dominators - dominated_by[front].sum(axis=0)
    return fronts


def _front_mask_1d(column: NDArray[np.float64]) -> NDArray[np.bool_]:
    return np.asarray(column == column.min())


def _lex_unique(matrix: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Distinct rows in lexicographic order (first column first) and each row's index in them."""
    order = np.lexsort(matrix.T[::-1])
    ordered = matrix[order]
    new = np.ones(ordered.shape[0], dtype=bool)
    changed = new[1:]
    changed[:] = False
    for column in ordered.T:
        changed |= column[1:] != column[:-1]
    inverse = np.empty(matrix.shape[0], dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


def _dominated_by_any(points: NDArray[np.float64], by: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which ``points`` some row of ``by`` dominates; one column at a time (fast in numpy)."""
    weakly = np.ones((points.shape[0], by.shape[0]), dtype=bool)
    strictly = np.zeros_like(weakly)
    for k in range(points.shape[1]):
        mine = points[:, k, None]
        theirs = by[None, :, k]
        weakly &= theirs <= mine
        strictly |= theirs < mine
    return np.asarray((weakly & strictly).any(axis=1))


def _front_mask_2d(matrix: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Exact 2-objective front in O(n log n): a sweep over the points sorted by (x, y).

    Every point that dominates ``p`` comes before ``p`` in lexicographic order,
    so ``p`` is dominated iff some earlier *distinct* point has ``y <= p.y``:
    i.e. iff the running minimum of y over the distinct points before it is
    ``<= p.y``. Duplicates share one verdict (equal points do not dominate).
    """
    unique, inverse = _lex_unique(matrix)
    running = np.minimum.accumulate(unique[:, 1])
    before = np.concatenate(([np.inf], running[:-1]))
    keep = unique[:, 1] < before
    # Nothing precedes the first point, even when its y is +inf (NaN points).
    keep[0] = True
    return np.asarray(keep[inverse])


def _staircase_3d(unique: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Exact front of distinct 3-objective rows in lexicographic order (Kung et al. 1975).

    ``p`` is dominated iff an earlier row has ``y <= p.y`` and ``z <= p.z``.
    The earlier rows are summarised by their 2-D (y, z) staircase: y ascending,
    z strictly descending, so the one row to check is the last with ``y <= p.y``
    (a binary search). O(n log n) comparisons.
    """
    ys: list[float] = []
    zs: list[float] = []
    keep = np.zeros(unique.shape[0], dtype=bool)
    for index, (y, z) in enumerate(unique[:, 1:].tolist()):
        position = bisect.bisect_right(ys, y)
        if position and zs[position - 1] <= z:
            continue
        keep[index] = True
        # Drop the steps the new point covers (y >= its y, z >= its z), then insert it.
        end = position
        while end < len(zs) and zs[end] >= z:
            end += 1
        ys[position:end] = [y]
        zs[position:end] = [z]
    return keep


def _front_mask_3d(matrix: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Exact 3-objective front: a vectorised prefilter, then the staircase sweep.

    Points dominated by one of :data:`PREFILTER_PIVOTS` good points (the best
    in each objective and in the sum of range-scaled objectives) are dropped
    with a few numpy comparisons; the exact sweep runs over the rest, usually
    a small share.
    """
    n = matrix.shape[0]
    finite = np.isfinite(matrix).all(axis=1)
    survivors = np.arange(n)
    if finite.any():
        low, high = matrix[finite].min(axis=0), matrix[finite].max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        score = np.where(finite, ((matrix - low) / span).sum(axis=1), np.inf)
        k = min(PREFILTER_PIVOTS, n - 1)
        chosen = [np.argpartition(score, k)[:k]]
        chosen += [np.argpartition(matrix[:, j], k // 4)[: k // 4] for j in range(3)]
        pivots = matrix[np.unique(np.concatenate(chosen))]
        survivors = np.flatnonzero(~_dominated_by_any(matrix, pivots))
    unique, inverse = _lex_unique(matrix[survivors])
    keep = np.zeros(n, dtype=bool)
    keep[survivors] = _staircase_3d(unique)[inverse]
    return keep


def _front_mask_sweep(matrix: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Exact front for any number of objectives: Kung-style sort, then filter.

    Points are visited in lexicographic order, in blocks of :data:`SWEEP_BLOCK`.
    A point can only be dominated by one before it, so each block is compared
    (vectorised) with the front found so far and then with itself, and the
    survivors join the front; nothing is ever removed from it. Cost is
    O(n log n + n * |front| * d): fast while the front is a small share of the
    points, as it is for real sweeps (a few hundred of 10^5 trials).
    """
    unique, inverse = _lex_unique(matrix)
    n, d = unique.shape
    keep = np.zeros(n, dtype=bool)
    front = np.empty((0, d), dtype=np.float64)
    for start in range(0, n, SWEEP_BLOCK):
        block = unique[start : start + SWEEP_BLOCK]
        alive = np.ones(block.shape[0], dtype=bool)
        for chunk in range(0, front.shape[0], SWEEP_BLOCK):
            alive &= ~_dominated_by_any(block, front[chunk : chunk + SWEEP_BLOCK])
        candidates = np.flatnonzero(alive)
        if candidates.size > 1:
            # Among the block's survivors only an earlier row can dominate a later one.
            alive[candidates[_dominated_by_any(block[candidates], block[candidates])]] = False
        keep[start : start + block.shape[0]] = alive
        front = np.concatenate((front, block[alive]))
    return np.asarray(keep[inverse])


def non_dominated_mask(points: ArrayLike) -> NDArray[np.bool_]:
    """Boolean mask of the points no other point dominates (minimisation space).

    Sort-based, for the scale of a large sweep (10^5 points): one objective is
    an ``argmin``; two are an O(n log n) sweep over the points sorted by the
    first objective; three are Kung's staircase sweep after a vectorised
    prefilter; four or more a block-vectorised sort-then-filter sweep
    (see :func:`_front_mask_sweep`). Same answer as front 0 of
    :func:`non_dominated_sort` (NaN points are the worst; equal points do not
    dominate each other), without its O(n²) memory.

    Raises:
        SpecError: ``points`` is not a 2-D array.
    """
    matrix = _as_points(points)
    n = matrix.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    d = matrix.shape[1]
    if d == 1:
        return _front_mask_1d(matrix[:, 0])
    if n <= PAIRWISE_MAX_POINTS:
        return np.asarray(~_domination_matrix(matrix).any(axis=0))
    if d == 2:
        return _front_mask_2d(matrix)
    if d == 3:
        return _front_mask_3d(matrix)
    return _front_mask_sweep(matrix)


def pareto_front(points: ArrayLike) -> NDArray[np.intp]:
    """Indices (ascending) of the points no other point dominates.

    Uses :func:`non_dominated_mask` (sort-based, O(n log n) for two
    objectives), so it is safe on hundreds of thousands of points.
    """
    return np.flatnonzero(non_dominated_mask(points)).astype(np.intp)


def crowding_distance(points: ArrayLike) -> NDArray[np.float64]:
    """NSGA-II crowding distance of each point, treating all points as one front.

    For each objective the points are sorted (stable, so ties keep index
    order); the first and last get ``inf`` and every other point adds the gap
    between its two neighbours divided by the objective's range. An objective
    whose range is zero adds nothing; one whose range is infinite (a NaN point or an inf
    value is present) adds only its boundary ``inf`` values, since a finite gap
    over an infinite range carries no information. With two points or fewer
    every distance is ``inf``.
    """
    matrix = _as_points(points)
    n = matrix.shape[0]
    distance = np.zeros(n, dtype=np.float64)
    if n <= 2:
        distance[:] = np.inf
        return distance
    for column in matrix.T:
        order = np.argsort(column, kind="stable")
        distance[order[0]] = np.inf
        distance[order[-1]] = np.inf
        span = column[order[-1]] - column[order[0]]
        if span > 0.0 and np.isfinite(span):
            distance[order[1:-1]] += (column[order[2:]] - column[order[:-2]]) / span
    return distance


def _front_order(front: NDArray[np.intp], distance: NDArray[np.float64]) -> NDArray[np.intp]:
    """A front's indices by decreasing crowding distance, ties by ascending index."""
    return front[np.lexsort((front, -distance))]


def pareto_rank_order(points: ArrayLike) -> NDArray[np.intp]:
    """All indices, best first: front by front, within a front by crowding distance.

    This is NSGA-II's total order (non-dominated rank, then decreasing
    crowding distance computed inside each front); remaining ties go to the
    lower index, so the order is deterministic.
    """
    matrix = _as_points(points)
    ordered = [
        _front_order(front, crowding_distance(matrix[front]))
        for front in non_dominated_sort(matrix)
    ]
    return np.concatenate(ordered) if ordered else np.empty(0, dtype=np.intp)


# --------------------------------------------------------------------------- hypervolume


def _hypervolume_2d(points: NDArray[np.float64], reference: NDArray[np.float64]) -> float:
    """Area dominated by ``points`` (all strictly better than ``reference``).

    Sorted by x, each point first reaches the strip between its y and the
    lowest y seen before it: every earlier point lies above that strip, every
    later one to its right. Vectorised: O(n log n).
    """
    order = np.lexsort((points[:, 1], points[:, 0]))
    x = points[order, 0]
    lowest = np.minimum.accumulate(points[order, 1])
    above = np.concatenate(([reference[1]], lowest[:-1]))
    return float(np.sum((reference[0] - x) * (above - lowest)))


def _hypervolume_slices(points: NDArray[np.float64], reference: NDArray[np.float64]) -> float:
    """HSO: slice along the last objective and sum (d-1)-dimensional volumes."""
    dims = points.shape[1]
    if dims == 1:
        return float(reference[0] - points[:, 0].min())
    if dims == 2:
        return _hypervolume_2d(points, reference)
    last = points[:, -1]
    levels = np.unique(last)
    bounds = np.append(levels, reference[-1])
    volume = 0.0
    for level, upper in zip(levels, bounds[1:], strict=True):
        section = points[last <= level, :-1]
        volume += _hypervolume_slices(section, reference[:-1]) * (upper - level)
    return volume


def hypervolume(points: ArrayLike, reference: ArrayLike) -> float:
    """Exact hypervolume (minimisation) dominated by ``points`` and bounded by ``reference``.

    Points that are not strictly better than ``reference`` in every objective
    add nothing (NaN counts as worst, so a point with NaN adds nothing). Uses
    hypervolume-by-slicing-objectives: a sweep for two objectives
    (O(n log n)) and one slice per distinct value of the last objective
    above that, so three objectives cost O(n² log n); fine for the hundreds of
    points of a sweep, exponential in the number of objectives.

    Raises:
        SpecError: ``points`` is not 2-D, ``reference`` is not a finite vector
            with one value per objective.
    """
    matrix = _as_points(points)
    ref = np.array(reference, dtype=np.float64)
    if ref.ndim != 1 or (matrix.size and ref.shape[0] != matrix.shape[1]):
        expected = matrix.shape[1] if matrix.size else "n_objectives"
        raise SpecError(
            MSG_VECTOR_SHAPE.format(name="reference", expected=expected, shape=ref.shape)
        )
    if not np.all(np.isfinite(ref)):
        raise SpecError(MSG_REFERENCE_NOT_FINITE.format(value=ref.tolist()))
    if matrix.shape[0] == 0:
        return 0.0
    inside = matrix[np.all(matrix < ref, axis=1)]
    if inside.shape[0] == 0:
        return 0.0
    # Dominated points add no volume; dropping them first keeps slices small.
    front = inside[pareto_front(inside)]
    return _hypervolume_slices(front, ref)


# --------------------------------------------------------------------------- successive halving


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SpecError(MSG_BAD_INT.format(name=name, value=value, minimum=minimum))
    return int(value)


def rung_levels(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """The ``time_attr`` values at which successive halving decides, ascending.

    ``grace_period * reduction_factor**k`` for ``k = 0, 1, ...`` while below
    ``max_t``: the same geometric rungs as Ray's ``AsyncHyperBandScheduler``,
    computed in integers (Ray's float ``log`` can drop a rung), and without a
    rung at ``max_t`` itself, where a trial is finished and nothing is left to
    decide.

    Raises:
        SpecError: ``grace_period`` < 1, ``reduction_factor`` < 2, ``max_t`` <
            ``grace_period``, or any of them not an integer.
    """
    grace = _check_int("grace_period", grace_period, 1)
    factor = _check_int("reduction_factor", reduction_factor, 2)
    limit = _check_int("max_t", max_t, 1)
    if limit < grace:
        raise SpecError(MSG_MAX_T_BELOW_GRACE.format(max_t=max_t, grace=grace))
    levels: list[int] = []
    level = grace
    while level < limit:
        levels.append(level)
        level *= factor
    return levels


def should_promote(rung_records: ArrayLike, new_index: int, reduction_factor: int) -> bool:
    """Whether the trial just recorded at a rung may continue (ASHA, Pareto-ranked).

    ``rung_records`` holds every point recorded at this rung so far, in
    minimisation space, including the new one at row ``new_index``. With ``n``
    records the new trial continues iff fewer than ``n / reduction_factor``
    records rank strictly ahead of it, i.e. iff it is in the top
    ``ceil(n / reduction_factor)`` of :func:`pareto_rank_order`, ties resolved
    in its favour. "Strictly ahead" means in a better non-dominated front, or
    in the same front with a larger crowding distance.

    Why this shape:

    * Ranking is NSGA-II's (fronts, then crowding distance), the selection
      Schmucker et al. (2021) evaluate for MO-ASHA next to an ε-net. We take
      NSGA-II because it is parameter-free and deterministic and is what the
      benchmark compares against; the ε-net needs a greedy farthest-point pass
      and a tie-break of its own.
    * Ties continue, as in Ray's ASHA (a reward equal to the cutoff is not
      stopped). So the boundary points of the first front (infinite crowding
      distance) always continue.
    * The first trial at a rung always continues. Ray's ASHA does *not*
      promote every trial while fewer than ``reduction_factor`` are recorded:
      from the second record on it compares against the
      ``(1 - 1/reduction_factor)`` percentile of the earlier ones, so with one
      earlier record a worse trial stops. This rule matches that exactly for
      ``n <= 2`` and follows the same top-``1/reduction_factor`` fraction after.

    Raises:
        SpecError: ``new_index`` out of range or ``reduction_factor`` < 2.
    """
    factor = _check_int("reduction_factor", reduction_factor, 2)
    matrix = _as_points(rung_records, "rung_records")
    n = matrix.shape[0]
    if isinstance(new_index, bool) or not isinstance(new_index, (int, np.integer)):
        raise SpecError(MSG_NEW_INDEX.format(value=new_index, n=n, last=n - 1))
    if not 0 <= new_index < n:
        raise SpecError(MSG_NEW_INDEX.format(value=new_index, n=n, last=n - 1))
    ahead = 0
    for front in non_dominated_sort(matrix):
        if new_index in front:
            distance = crowding_distance(matrix[front])
            own = distance[np.flatnonzero(front == new_index)[0]]
            ahead += int(np.count_nonzero(distance > own))
            break
        ahead += front.size
    return ahead * factor < n
