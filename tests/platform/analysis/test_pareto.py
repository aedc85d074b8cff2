"""Pareto maths on hand-made point sets with known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from regtune.errors import SpecError
from regtune.platform.analysis import pareto
from regtune.platform.analysis.pareto import (
    crowding_distance,
    dominates,
    hypervolume,
    non_dominated_sort,
    objective_vector,
    pareto_front,
    pareto_rank_order,
    rung_levels,
    should_promote,
    to_minimization,
    validate_objectives,
)

INF = math.inf

# Front 0: 0, 1, 2 and 5 (a duplicate of 1); front 1: 3 (dominated by 1), 6
# (dominated by 2); front 2: 4 (dominated by 3).
FRONTS_2D = np.array([[1, 5], [2, 3], [4, 1], [3, 4], [5, 5], [2, 3], [4, 2]], dtype=float)

# Five points of one front. Crowding by hand (both ranges are 10):
#   1: x (2-0)/10 + y (10-5)/10 = 0.7
#   2: x (6-1)/10 + y (6-1)/10  = 1.0
#   3: x (10-2)/10 + y (5-0)/10 = 1.3
ONE_FRONT = np.array([[0, 10], [1, 6], [2, 5], [6, 1], [10, 0]], dtype=float)


def _fronts(points: np.ndarray) -> list[list[int]]:
    return [front.tolist() for front in non_dominated_sort(points)]


# --------------------------------------------------------------------------- objectives


def test_validate_objectives_accepts_pairs() -> None:
    pairs = [("loss", "min"), ["acc", "max"]]  # lists from YAML are pairs too
    assert validate_objectives(pairs) == (  # type: ignore[arg-type]
        ("loss", "min"),
        ("acc", "max"),
    )


@pytest.mark.parametrize(
    ("objectives", "message"),
    [
        ([], pareto.MSG_NO_OBJECTIVES.format(value=[])),
        ("loss", pareto.MSG_NO_OBJECTIVES.format(value="loss")),
        ([("loss",)], pareto.MSG_BAD_OBJECTIVE.format(index=0, value=("loss",))),
        ([("", "min")], pareto.MSG_BAD_METRIC_NAME.format(index=0, value="")),
        (
            [("loss", "min"), ("acc", "maximise")],
            pareto.MSG_BAD_MODE.format(
                index=1, value="maximise", metric="acc", allowed="'min', 'max'"
            ),
        ),
        ([("loss", "min"), ("loss", "max")], pareto.MSG_DUPLICATE_METRIC.format(metric="loss")),
    ],
)
def test_validate_objectives_rejects(objectives: object, message: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_objectives(objectives)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_to_minimization_negates_max_columns() -> None:
    out = to_minimization([[1.0, 0.9], [2.0, 0.8]], ["min", "max"])
    np.testing.assert_array_equal(out, [[1.0, -0.9], [2.0, -0.8]])


def test_to_minimization_makes_nan_points_worst_in_every_column() -> None:
    out = to_minimization([[1.0, 0.9], [np.nan, 0.99]], ["min", "max"])
    np.testing.assert_array_equal(out, [[1.0, -0.9], [INF, INF]])


def test_to_minimization_rejects_bad_modes() -> None:
    with pytest.raises(SpecError, match=r"modes\[1\]: 'up' is not allowed"):
        to_minimization([1.0, 2.0], ["min", "up"])
    with pytest.raises(SpecError) as info:
        to_minimization([1.0, 2.0, 3.0], ["min", "max"])
    assert str(info.value) == pareto.MSG_MODES_LENGTH.format(got=2, expected=3)


def test_objective_vector_reads_and_converts() -> None:
    objectives = validate_objectives([("loss", "min"), ("acc", "max")])
    out = objective_vector({"loss": 0.5, "acc": np.float32(0.75), "x": "y"}, objectives)
    np.testing.assert_array_equal(out, [0.5, -0.75])
    assert objective_vector({"loss": None, "acc": 0.9}, objectives).tolist() == [INF, INF]


def test_objective_vector_names_missing_metric_and_available_keys() -> None:
    objectives = validate_objectives([("loss", "min"), ("acc", "max")])
    with pytest.raises(SpecError) as info:
        objective_vector({"loss": 0.5, "val_acc": 0.7}, objectives)
    assert str(info.value) == pareto.MSG_MISSING_METRIC.format(
        metric="acc", available="loss, val_acc"
    )
    assert "available keys: loss, val_acc" in str(info.value)


@pytest.mark.parametrize("value", ["0.5", True, [0.5]])
def test_objective_vector_rejects_non_numbers(value: object) -> None:
    objectives = validate_objectives([("loss", "min")])
    with pytest.raises(SpecError) as info:
        objective_vector({"loss": value}, objectives)
    assert str(info.value) == pareto.MSG_NOT_NUMERIC.format(metric="loss", value=value)


# --------------------------------------------------------------------------- dominance


def test_dominates_minimisation() -> None:
    assert dominates([1, 2], [2, 2])
    assert not dominates([2, 2], [1, 2])
    assert not dominates([1, 2], [1, 2])  # equal points
    assert not dominates([1, 3], [2, 1]) and not dominates([2, 1], [1, 3])


def test_dominates_with_mixed_modes() -> None:
    modes = ["min", "max"]  # loss down, accuracy up
    assert dominates([0.1, 0.9], [0.2, 0.8], modes)
    assert not dominates([0.2, 0.8], [0.1, 0.9], modes)
    # Lower loss but lower accuracy: a trade-off, neither dominates.
    assert not dominates([0.1, 0.8], [0.2, 0.9], modes)
    assert not dominates([0.2, 0.9], [0.1, 0.8], modes)
    # Same numbers read as plain minimisation give the opposite answer.
    assert dominates([0.1, 0.8], [0.2, 0.9])


def test_dominates_treats_nan_points_as_worst() -> None:
    assert dominates([9.0, 9.0], [0.0, np.nan])
    assert not dominates([0.0, np.nan], [9.0, 9.0])
    # NaN in a "max" column is still worst, not +inf accuracy.
    assert dominates([0.5, 0.1], [0.5, np.nan], ["min", "max"])
    assert not dominates([0.5, np.nan], [0.5, 0.1], ["min", "max"])
    assert not dominates([np.nan, 1.0], [np.nan, 2.0])


def test_dominates_rejects_mismatched_points() -> None:
    with pytest.raises(SpecError, match="b: expected a 1-D vector of 2 objective values"):
        dominates([1, 2], [1, 2, 3])
    with pytest.raises(SpecError, match="a: expected a 1-D vector"):
        dominates([[1, 2]], [1, 2])


def test_non_dominated_sort_2d_known_fronts() -> None:
    assert _fronts(FRONTS_2D) == [[0, 1, 2, 5], [3, 6], [4]]
    assert pareto_front(FRONTS_2D).tolist() == [0, 1, 2, 5]


def test_non_dominated_sort_3d_known_fronts() -> None:
    points = np.array([[1, 2, 3], [3, 2, 1], [2, 2, 2], [2, 3, 3], [4, 4, 4]], dtype=float)
    # 3 is dominated by 0 only; 4 by everything.
    assert _fronts(points) == [[0, 1, 2], [3], [4]]


def test_non_dominated_sort_with_mixed_modes_via_to_minimization() -> None:
    raw = np.array([[0.1, 0.80], [0.2, 0.90], [0.3, 0.85], [0.1, 0.70]])  # loss, acc
    points = to_minimization(raw, ["min", "max"])
    # 2 is beaten by 1 (lower loss, higher acc); 3 by 0 (same loss, higher acc).
    assert _fronts(points) == [[0, 1], [2, 3]]


def test_non_dominated_sort_puts_nan_points_last() -> None:
    points = np.array([[np.nan, 0.0], [5.0, 5.0], [1.0, 6.0]])
    assert _fronts(points) == [[1, 2], [0]]


def test_non_dominated_sort_empty_and_bad_shape() -> None:
    assert non_dominated_sort(np.empty((0, 2))) == []
    assert pareto_front(np.empty((0, 2))).tolist() == []
    with pytest.raises(SpecError, match=r"points: expected a 2-D array .* got shape \(3,\)"):
        non_dominated_sort([1.0, 2.0, 3.0])


# --------------------------------------------------------------------------- crowding


def test_crowding_distance_known_values() -> None:
    np.testing.assert_allclose(crowding_distance(ONE_FRONT), [INF, 0.7, 1.0, 1.3, INF])


def test_crowding_distance_small_sets_are_all_infinite() -> None:
    assert crowding_distance([[1.0, 2.0], [2.0, 1.0]]).tolist() == [INF, INF]
    assert crowding_distance([[1.0, 2.0]]).tolist() == [INF]
    assert crowding_distance(np.empty((0, 2))).tolist() == []


def test_crowding_distance_zero_range_column_adds_nothing() -> None:
    points = [[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]
    # Column 0: middle gets (3-1)/2 = 1; column 1 has range 0: boundaries only.
    assert crowding_distance(points).tolist() == [INF, 1.0, INF]


def test_crowding_distance_with_a_nan_point() -> None:
    # The NaN point becomes (inf, inf): both columns have an infinite range,
    # so only boundary points get a (infinite) distance.
    points = [[0.0, 3.0], [1.0, 2.0], [2.0, 1.0], [np.nan, 0.0]]
    assert crowding_distance(points).tolist() == [INF, 0.0, INF, INF]


def test_pareto_rank_order_front_by_front_then_crowding() -> None:
    # Front 0 crowding (x range 3, y range 4; 1 and 5 are equal, stable order
    # puts 1 first): 1 = (2-1)/3 + (3-1)/4 = 0.83, 5 = (4-2)/3 + (5-3)/4 = 1.17.
    assert pareto_rank_order(FRONTS_2D).tolist() == [0, 2, 5, 1, 3, 6, 4]
    # Within one front: boundaries (ties by index), then 3 (1.3), 2 (1.0), 1 (0.7).
    assert pareto_rank_order(ONE_FRONT).tolist() == [0, 4, 3, 2, 1]


def test_pareto_rank_order_is_deterministic_on_ties() -> None:
    same = np.ones((5, 2))
    # Stable sorts make the first and last index the boundaries (inf) of every
    # column; the rest have distance 0 and keep index order.
    assert pareto_rank_order(same).tolist() == [0, 4, 1, 2, 3]
    first = pareto_rank_order(FRONTS_2D)
    assert all(np.array_equal(first, pareto_rank_order(FRONTS_2D.copy())) for _ in range(3))
    assert pareto_rank_order(np.empty((0, 3))).tolist() == []


# --------------------------------------------------------------------------- hypervolume


def _grid_hypervolume(points: np.ndarray, reference: np.ndarray) -> int:
    """Count unit cells dominated by integer points: exact for integer inputs."""
    count = 0
    for cell in itertools.product(*(range(int(r)) for r in reference)):
        if np.any(np.all(points <= np.array(cell), axis=1)):
            count += 1
    return count


def test_hypervolume_2d_known_value() -> None:
    # Staircase strips: 3*1 + 2*1 + 1*1.
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4]) == 6.0


def test_hypervolume_3d_known_values() -> None:
    assert hypervolume([[0, 0, 0]], [1, 2, 3]) == 6.0
    # Two boxes of 4 and 2 sharing the unit cube [1, 2]^3.
    assert hypervolume([[0, 0, 1], [1, 1, 0]], [2, 2, 2]) == 5.0


def test_hypervolume_ignores_dominated_outside_and_nan_points() -> None:
    base = hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4])
    extra = np.array([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0], [4, 1], [np.nan, 0]])
    assert hypervolume(extra, [4, 4]) == base
    assert hypervolume([[5, 5]], [4, 4]) == 0.0
    assert hypervolume(np.empty((0, 2)), [4, 4]) == 0.0


@pytest.mark.parametrize("dims", [2, 3])
def test_hypervolume_matches_grid_count_on_integer_points(dims: int) -> None:
    rng = np.random.default_rng(dims)
    reference = np.full(dims, 6.0)
    for size in (1, 4, 9, 15):
        points = rng.integers(0, 6, size=(size, dims)).astype(float)
        assert hypervolume(points, reference) == _grid_hypervolume(points, reference)


def test_hypervolume_matches_monte_carlo_on_random_floats() -> None:
    rng = np.random.default_rng(7)
    points = rng.random((12, 3))
    reference = np.array([1.0, 1.0, 1.0])
    samples = rng.random((200_000, 3))
    covered = np.zeros(len(samples), dtype=bool)
    for point in points:
        covered |= np.all(samples >= point, axis=1)
    # Binomial standard error with p ~ 0.5 and 2e5 samples is ~0.0011.
    assert hypervolume(points, reference) == pytest.approx(covered.mean(), abs=0.006)


def test_hypervolume_matches_optuna() -> None:
    optuna_hv = pytest.importorskip("optuna._hypervolume")
    rng = np.random.default_rng(3)
    for dims in (2, 3):
        points = rng.random((40, dims))
        reference = np.full(dims, 1.1)
        expected = optuna_hv.compute_hypervolume(points, reference)
        assert hypervolume(points, reference) == pytest.approx(expected, rel=1e-12)


def test_hypervolume_rejects_bad_reference() -> None:
    with pytest.raises(SpecError, match="reference: expected a 1-D vector of 2"):
        hypervolume([[1, 2]], [3, 3, 3])
    with pytest.raises(SpecError) as info:
        hypervolume([[1, 2]], [3, np.inf])
    assert str(info.value) == pareto.MSG_REFERENCE_NOT_FINITE.format(value=[3.0, INF])


# --------------------------------------------------------------------------- rungs


def test_rung_levels() -> None:
    assert rung_levels(1, 3, 9) == [1, 3]
    assert rung_levels(1, 3, 100) == [1, 3, 9, 27, 81]
    assert rung_levels(2, 2, 17) == [2, 4, 8, 16]
    assert rung_levels(5, 3, 5) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 3, 9), pareto.MSG_BAD_INT.format(name="grace_period", value=0, minimum=1)),
        ((1, 1, 9), pareto.MSG_BAD_INT.format(name="reduction_factor", value=1, minimum=2)),
        ((1, 2.5, 9), pareto.MSG_BAD_INT.format(name="reduction_factor", value=2.5, minimum=2)),
        ((1, True, 9), pareto.MSG_BAD_INT.format(name="reduction_factor", value=True, minimum=2)),
        ((4, 3, 3), pareto.MSG_MAX_T_BELOW_GRACE.format(max_t=3, grace=4)),
    ],
)
def test_rung_levels_rejects(args: tuple[object, object, object], message: str) -> None:
    with pytest.raises(SpecError) as info:
        rung_levels(*args)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_should_promote_first_record_always_continues() -> None:
    assert should_promote([[9.0, 9.0]], 0, 3)


def test_should_promote_second_record_matches_ray_asha() -> None:
    # Ray's ASHA stops a second trial that is worse than the first.
    assert not should_promote([[1.0, 1.0], [2.0, 2.0]], 1, 3)
    assert should_promote([[2.0, 2.0], [1.0, 1.0]], 1, 3)
    # A trade-off ties (same front, both boundary points): ties continue.
    assert should_promote([[1.0, 2.0], [2.0, 1.0]], 1, 2)


def test_should_promote_by_front_then_crowding() -> None:
    # n = 5, reduction factor 2: continue iff fewer than 2.5 records rank ahead.
    assert should_promote(ONE_FRONT, 0, 2)  # boundary, ties with 4
    assert should_promote(ONE_FRONT, 3, 2)  # 2 ahead (the boundaries)
    assert not should_promote(ONE_FRONT, 2, 2)  # 3 ahead
    assert not should_promote(ONE_FRONT, 1, 2)  # 4 ahead
    # Reduction factor 3: 5/3 = 1.67, so only the boundaries (0 ahead) continue.
    assert [should_promote(ONE_FRONT, i, 3) for i in range(5)] == [
        True,
        False,
        False,
        False,
        True,
    ]


def test_should_promote_dominated_and_nan_records() -> None:
    # Front 0 has 4 points; a front-1 point has at least 4 ahead of 7.
    assert not should_promote(FRONTS_2D, 3, 2)
    assert should_promote(FRONTS_2D, 0, 2)
    records = np.array([[1.0, 1.0], [3.0, 3.0], [0.0, np.nan]])
    assert not should_promote(records, 2, 2)  # NaN point: worst of all
    assert not should_promote(records, 2, 3)


def test_should_promote_rejects_bad_index() -> None:
    with pytest.raises(SpecError) as info:
        should_promote([[1.0, 2.0]], 1, 3)
    assert str(info.value) == pareto.MSG_NEW_INDEX.format(value=1, n=1, last=0)
    with pytest.raises(SpecError, match="reduction_factor"):
        should_promote([[1.0, 2.0]], 0, 1)
