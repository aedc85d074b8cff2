"""The sort-based front (non_dominated_mask) against the pairwise definition."""

from __future__ import annotations

import numpy as np
import pytest

from regtune.errors import SpecError
from regtune.platform.analysis import pareto
from regtune.platform.analysis.pareto import hypervolume, non_dominated_mask, pareto_front


def _pairwise(points: np.ndarray) -> np.ndarray:
    matrix = np.where(np.isnan(points).any(axis=1, keepdims=True), np.inf, points)
    le = np.all(matrix[:, None, :] <= matrix[None, :, :], axis=2)
    lt = np.any(matrix[:, None, :] < matrix[None, :, :], axis=2)
    return ~(le & lt).any(axis=0)


@pytest.mark.parametrize("dims", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [50, 600, 1500])
def test_mask_matches_pairwise_with_ties_nan_and_inf(dims: int, n: int) -> None:
    rng = np.random.default_rng(dims * 1000 + n)
    # Few distinct values: many duplicates and ties, the hard cases for a sweep.
    points = rng.integers(0, 12, size=(n, dims)).astype(float)
    points[rng.random(n) < 0.05, 0] = np.nan
    points[rng.random(n) < 0.02, -1] = np.inf
    np.testing.assert_array_equal(non_dominated_mask(points), _pairwise(points))


def test_three_objectives_all_on_the_front() -> None:
    # Points on the plane x + y + z = 1: nobody dominates anybody.
    rng = np.random.default_rng(0)
    points = rng.random((2000, 3))
    points /= points.sum(axis=1, keepdims=True)
    assert non_dominated_mask(points).all()


def test_known_front_two_objectives() -> None:
    points = np.array([[1, 5], [2, 3], [4, 1], [3, 4], [5, 5], [2, 3], [4, 2]], dtype=float)
    big = np.tile(points, (100, 1))  # above the pairwise size limit: the sweep answers
    expected = np.tile([True, True, True, False, False, True, False], 100)
    np.testing.assert_array_equal(non_dominated_mask(big), expected)
    assert pareto_front(points).tolist() == [0, 1, 2, 5]


@pytest.mark.parametrize("dims", [2, 3])
def test_all_nan_points_are_one_front(dims: int) -> None:
    assert non_dominated_mask(np.full((500, dims), np.nan)).all()


def test_empty_and_bad_shapes() -> None:
    assert non_dominated_mask(np.empty((0, 3))).shape == (0,)
    with pytest.raises(SpecError, match="2-D array"):
        non_dominated_mask(np.zeros((2, 2, 2)))


def test_hypervolume_known_answers_large() -> None:
    # Staircase (1,3), (2,2), (3,1) against (4,4): 3 + 2 + 1 = 6 square units,
    # repeated many times and padded with dominated points: still 6.
    stairs = np.array([[1, 3], [2, 2], [3, 1]], dtype=float)
    dominated = np.array([[3.5, 3.5], [2.5, 2.5]])
    points = np.vstack([np.tile(stairs, (400, 1)), np.tile(dominated, (400, 1))])
    assert hypervolume(points, [4, 4]) == pytest.approx(6.0)
    # A unit cube corner at the origin against (1, 1, 1): volume 1.
    assert hypervolume(np.zeros((1, 3)), [1, 1, 1]) == pytest.approx(1.0)
    # Two boxes in 3-D: [0,2]x[0,1]x[0,1] and [0,1]x[0,2]x[0,1] overlap in a unit cube: 3.
    two = np.array([[0, 1, 0], [1, 0, 0]], dtype=float)
    assert hypervolume(two, [2, 2, 1]) == pytest.approx(3.0)


def test_pairwise_limit_is_a_named_constant() -> None:
    assert pareto.PAIRWISE_MAX_POINTS < 600 and pareto.SWEEP_BLOCK > 0
