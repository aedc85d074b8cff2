"""Decisions of a threshold lottery (see :mod:`regtune.trainables.threshold_lottery`,
which fits them): the per-row draw, applying a lottery, and its stored form.

Numpy and torch only: ``regtune serve`` and ``regtune.load`` import it to
decide as the trainer did, without the fitting stack (scipy, pydantic).

A row of group ``g`` with score ``p`` gets ``p >= thresholds[g][j]`` for the
``j`` that its draw ``u = row_uniforms(p)`` picks from the cumulative
weights. The draw is a hash of the score (on a grid of :data:`DRAW_GRID`),
so an input gets the same decision each time it is scored, on every machine
(see :func:`row_uniforms` for the one exception: a score within a float32
rounding of a grid edge).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from regtune.errors import DataError

__all__ = [
    "BAD_CODES",
    "BAD_LOTTERY",
    "DRAW_GRID",
    "THRESHOLD_TOP",
    "apply_lottery",
    "pack",
    "row_uniforms",
    "unpack",
    "valid_packed",
]

#: Largest threshold a lottery holds ("select none" sits just above the top
#: score, at most just above 1).
THRESHOLD_TOP = float(np.nextafter(1.0, 2.0))
BAD_CODES = (
    "apply_lottery needs group codes >= 0 (a row of an unknown group has no lottery: "
    "decide it by the arg-max); got {low}"
)
#: Scores closer than this share a draw (:func:`row_uniforms`).
DRAW_GRID = 1e-4
BAD_LOTTERY = (
    "apply_lottery needs one (thresholds, weights) pair per group code, each with equal, "
    "non-zero lengths; got {n} groups for group codes up to {top}"
)


def row_uniforms(scores: Tensor | np.ndarray) -> np.ndarray:
    """A uniform number in ``[0, 1)`` per score: splitmix64 of the score on a
    grid of :data:`DRAW_GRID` (``round(p / DRAW_GRID)`` as an integer), the top
    53 bits as a fraction. The function is the same on every machine.

    Why the grid: a network's float32 score of one input can differ in its
    last bit with how many rows are scored together (CPU kernels block by
    batch size), and a hash of the exact bits would then draw anew for any
    such row between two of its group's thresholds (284 of Adult's 16,281
    test decisions of an EO lottery, scored one by one against all at once;
    0 on the grid). On the grid two scores that close get the same draw
    unless a grid edge falls between them: about one such row in 1,000 (a
    1e-7 move over a 1e-4 step).
    """
    if isinstance(scores, Tensor):
        scores = scores.detach().to("cpu").double().numpy()
    cells = np.floor(np.asarray(scores, dtype=np.float64) / DRAW_GRID + 0.5)
    z = cells.astype(np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _check_lottery(
    thresholds: Sequence[Sequence[float]], weights: Sequence[Sequence[float]], top: int
) -> None:
    ok = len(thresholds) == len(weights) and len(thresholds) > top
    ok = ok and all(
        len(t) == len(w) and len(t) > 0 for t, w in zip(thresholds, weights, strict=False)
    )
    if not ok:
        raise DataError(BAD_LOTTERY.format(n=len(thresholds), top=top))


def apply_lottery(
    scores: Tensor | np.ndarray,
    s: Tensor | np.ndarray,
    thresholds: Sequence[Sequence[float]],
    weights: Sequence[Sequence[float]],
) -> np.ndarray:
    """Decisions (int64, 1 = positive class) of a lottery: for a row of group
    ``g`` with score ``p``, ``p >= thresholds[g][j]`` for the ``j`` that
    :func:`row_uniforms` (``p``) picks by the cumulative ``weights[g]``.

    Raises:
        DataError: fewer (thresholds, weights) pairs than group codes, or a
            pair of unequal or zero length.
    """
    p = scores.detach().to("cpu").double().numpy() if isinstance(scores, Tensor) else scores
    p = np.asarray(p, dtype=np.float64)
    codes = s.detach().to("cpu").long().numpy() if isinstance(s, Tensor) else np.asarray(s)
    top = int(codes.max()) if codes.size else -1
    if codes.size and int(codes.min()) < 0:
        raise DataError(BAD_CODES.format(low=int(codes.min())))
    _check_lottery(thresholds, weights, top)
    u = row_uniforms(p)
    cut = np.empty(p.shape[0], dtype=np.float64)
    for g in np.unique(codes):
        rows = codes == g
        cumulative = np.cumsum(np.asarray(weights[int(g)], dtype=np.float64))
        pick = np.searchsorted(cumulative / cumulative[-1], u[rows], side="right")
        table = np.asarray(thresholds[int(g)], dtype=np.float64)
        cut[rows] = table[np.minimum(pick, table.size - 1)]
    return (p >= cut).astype(np.int64)


def pack(thresholds: Sequence[Sequence[float]], weights: Sequence[Sequence[float]]) -> Tensor:
    """A lottery as one float64 tensor of shape ``(groups, k, 2)`` (threshold,
    weight), padded with weight 0 (how a checkpoint stores it)."""
    k = max(len(t) for t in thresholds)
    out = torch.zeros((len(thresholds), k, 2), dtype=torch.float64)
    for g, (t, w) in enumerate(zip(thresholds, weights, strict=True)):
        out[g, : len(t), 0] = torch.tensor(t, dtype=torch.float64)
        out[g, : len(w), 1] = torch.tensor(w, dtype=torch.float64)
    return out


def unpack(packed: Tensor) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
    """:func:`pack`'s input back: per group the thresholds and weights of the
    entries with a positive weight."""
    thresholds, weights = [], []
    for group in packed.double().cpu().tolist():
        kept = [(t, w) for t, w in group if w > 0]
        thresholds.append(tuple(t for t, _ in kept))
        weights.append(tuple(w for _, w in kept))
    return tuple(thresholds), tuple(weights)


def valid_packed(value: object) -> bool:
    """Whether ``value`` is a packed lottery (:func:`pack`): a finite float
    tensor ``(groups, k, 2)`` whose weights are >= 0 and sum to 1 per group
    (to 1e-6) with thresholds in [0, 1] where the weight is positive."""
    if not isinstance(value, Tensor) or not value.is_floating_point() or value.dim() != 3:
        return False
    if value.shape[-1] != 2 or value.shape[0] == 0 or value.shape[1] == 0:
        return False
    v = value.double()
    if not bool(torch.isfinite(v).all()):
        return False
    t, w = v[..., 0], v[..., 1]
    used = w > 0
    in_range = bool(((t >= 0) & (t <= THRESHOLD_TOP) | ~used).all())
    return bool((w >= 0).all()) and bool(((w.sum(dim=1) - 1).abs() <= 1e-6).all()) and in_range
