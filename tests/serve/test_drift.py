"""Drift maths: PSI and KS against a quantile reference, and the rolling monitor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from regtune.errors import DataError
from regtune.serve.drift import (
    DriftMonitor,
    categorical_psi,
    drift_report,
    has_round_off,
    is_discrete,
    ks_critical,
    ks_statistic,
    label_psi,
    numeric_psi,
    psi,
    reference_categories,
    reference_cdf,
)
from regtune.trainables.schema import CategoricalFeature, FeatureSchema

LEVELS = np.linspace(0.0, 1.0, 101)


def quantiles(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.quantile(values, LEVELS)]


def test_psi_matches_its_formula_and_floors_empty_bins() -> None:
    e, o = np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.4, 0.2])
    assert psi(e, o) == pytest.approx(-0.1 * np.log(0.4 / 0.5) + 0.1 * np.log(0.4 / 0.3))
    assert psi(e, e) == 0.0
    assert np.isfinite(psi(np.array([1.0, 0.0]), np.array([0.0, 1.0])))


def test_reference_cdf_hits_the_quantile_levels_and_keeps_point_masses() -> None:
    rng = np.random.default_rng(0)
    q = quantiles(rng.normal(size=5000))
    cdf = reference_cdf(q)
    assert cdf(np.array(q[1:-1])) == pytest.approx(LEVELS[1:-1])
    assert cdf(np.array([q[0] - 1, q[-1] + 1])).tolist() == [0.0, 1.0]
    # 70 % zeros: F jumps from 0 to about 0.7 at 0.
    masses = np.where(rng.random(5000) < 0.7, 0.0, rng.exponential(10.0, 5000))
    cdf = reference_cdf(quantiles(masses))
    assert cdf(np.array([0.0]), left=True)[0] == 0.0
    assert cdf(np.array([0.0]))[0] == pytest.approx(0.7, abs=0.02)


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_ks_equals_the_two_sample_statistic_to_the_quantile_resolution(shift: float) -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=50_000)
    window = rng.normal(size=400) + shift
    expected = stats.ks_2samp(window, ref).statistic
    assert ks_statistic(quantiles(ref), window) == pytest.approx(expected, abs=0.012)


def test_ks_handles_point_masses_like_scipy() -> None:
    rng = np.random.default_rng(2)
    ref = np.where(rng.random(50_000) < 0.9, 0.0, rng.exponential(1000.0, 50_000))
    window = np.where(rng.random(500) < 0.6, 0.0, rng.exponential(1000.0, 500))
    expected = stats.ks_2samp(window, ref).statistic
    assert ks_statistic(quantiles(ref), window) == pytest.approx(expected, abs=0.012)


def test_ks_on_a_whole_number_feature_keeps_its_level_and_still_sees_a_shift() -> None:
    """62 ages: the reference pins its CDF only to within 0.01 between quantiles,
    which the linear reading counted as distance (11 of 20 such windows flagged)."""
    rng = np.random.default_rng(8)
    cdf = reference_cdf(quantiles(rng.integers(18, 80, 50_000).astype(float)))
    n = 10_000
    same = [ks_statistic(cdf, rng.integers(18, 80, n).astype(float)) for _ in range(100)]
    assert sum(k > ks_critical(n) for k in same) <= 3  # level 0.01
    # Three years older (true KS 0.048): flagged every time, as is a window of the
    # default size where 9 % of the ages are above the training range.
    older = [ks_statistic(cdf, rng.integers(21, 83, n).astype(float)) for _ in range(20)]
    assert all(k > ks_critical(n) for k in older)
    wider = [ks_statistic(cdf, rng.integers(18, 86, 1000).astype(float)) for _ in range(20)]
    assert all(k > ks_critical(1000) for k in wider)


@pytest.mark.parametrize("levels", [2, 5, 62, 400])
def test_discrete_ks_is_at_most_the_distance_to_the_training_column(levels: int) -> None:
    """The distance to the nearest CDF the quantiles allow never exceeds the one to
    the training column's own CDF (scipy's two-sample statistic), whose quantiles
    they are (to numpy's interpolation, 1/n of the reference)."""
    rng = np.random.default_rng(levels)
    ref = rng.integers(0, levels, 20_000).astype(float)
    cdf = reference_cdf(quantiles(ref))
    assert is_discrete(cdf)
    for shift in (0, 0, 1):
        window = rng.integers(0, levels, 2000).astype(float) + shift
        expected = stats.ks_2samp(window, ref).statistic
        assert ks_statistic(cdf, window) <= expected + 1 / ref.size


def test_only_features_with_point_masses_or_whole_numbers_are_discrete() -> None:
    rng = np.random.default_rng(9)
    assert not is_discrete(quantiles(rng.normal(size=20_000)))
    assert not is_discrete(quantiles(rng.lognormal(0.0, 1.5, 20_000) * 1000))
    assert is_discrete(quantiles(rng.normal(size=20_000).round()))  # point masses
    assert is_discrete(quantiles(rng.poisson(40.0, 20_000).astype(float)))  # counts
    masses = np.where(rng.random(20_000) < 0.7, 0.0, rng.exponential(1.0, 20_000))
    assert is_discrete(quantiles(masses))  # the point mass at 0


def test_numeric_psi_is_small_on_the_same_distribution_and_large_when_shifted() -> None:
    rng = np.random.default_rng(3)
    q = quantiles(rng.normal(size=20_000))
    assert numeric_psi(q, rng.normal(size=1000)) < 0.05
    assert numeric_psi(q, rng.normal(size=1000) + 1.0) > 0.5
    # Deciles fall in ten equal bins: a window all in the lowest decile.
    lowest = np.full(100, q[0])
    assert numeric_psi(q, lowest) == pytest.approx(psi(np.full(10, 0.1), np.eye(10)[0]))


def test_categorical_psi_counts_unseen_categories_in_their_own_bin() -> None:
    value, unseen = categorical_psi({"a": 0.5, "b": 0.5}, ["a"] * 50 + ["b"] * 45 + ["c"] * 5)
    assert unseen == 0.05
    assert value == pytest.approx(psi(np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.45, 0.05])))


def test_categories_are_placed_by_their_canonical_form_as_predict_places_them() -> None:
    # 1, 1.0 and "1" are one category; " a " is "a" (what the model's encoder reads).
    values = [1, 1.0, "1", " 1 ", " a ", "a", "a\u0301", "\u00e1", True]
    value, unseen = categorical_psi({"1": 0.5, "a": 0.3, "\u00e1": 0.2}, values)
    assert unseen == pytest.approx(1 / 9)  # only True: no category "True" here
    observed = np.array([4, 2, 2, 1]) / 9
    assert value == pytest.approx(psi(np.array([0.5, 0.3, 0.2, 0.0]), observed))
    # Keys spelt differently from their canonical form still name their category.
    assert categorical_psi({" b": 1.0}, ["b"] * 10) == (0.0, 0.0)


def test_missing_values_are_no_category_and_count_as_unseen() -> None:
    values = ["a"] * 6 + [None, float("nan"), np.float64("nan"), "b"]
    value, unseen = categorical_psi({"a": 0.6, "b": 0.4}, values)
    assert unseen == pytest.approx(0.3)
    assert value == pytest.approx(psi(np.array([0.6, 0.4, 0.0]), np.array([0.6, 0.1, 0.3])))
    assert categorical_psi({"a": 1.0}, []) == (pytest.approx(psi(np.eye(2)[0], np.zeros(2))), 0.0)


def test_reference_keys_that_are_one_category_or_unknown_to_the_model_are_refused() -> None:
    with pytest.raises(DataError, match="'a' and ' a' are one value"):
        reference_categories({"a": 0.5, " a": 0.5}, what="feature 'c'")
    index = FeatureSchema((), (CategoricalFeature("c", ("a", "b")),), "y", (0, 1)).value_index("c")
    with pytest.raises(
        ValueError, match=r"feature 'c': reference category 'z' is not one of .*'a', 'b'"
    ):
        reference_categories({"a": 0.5, "z": 0.5}, index, what="feature 'c'")


def _legacy_schema() -> FeatureSchema:
    """A schema stored before canonical values: its vocabulary holds ``str(float)`` texts."""
    return FeatureSchema(
        numeric=(),
        categorical=(CategoricalFeature("zip", ("1.0", "2.0")), CategoricalFeature("c", ("a",))),
        label="y",
        classes=(0, 1),
        version=1,
    )


def test_a_monitor_with_the_schema_knows_exactly_the_values_predict_knows() -> None:
    schema = _legacy_schema()
    ref = {"features": {"zip": {"kind": "categorical", "frequencies": {"1.0": 0.5, "2.0": 0.5}},
                        "c": {"kind": "categorical", "frequencies": {"a": 1.0}}}}  # fmt: skip
    sent = [1, 2, 1.0, "2.0", "1", " 2 ", 3, "x", "1.5"]
    records = [{"zip": v, "c": "a"} for v in sent * 20]
    monitor = DriftMonitor(ref, schema=schema, window=len(records), min_window=10)
    monitor.observe(records, ["0"] * len(records))
    entry = monitor.report()["features"]["zip"]
    index = schema.value_index("zip")
    unknown = [v for v in sent if index.code(v) is None]
    assert unknown == [3, "x", "1.5"]  # the encoder's own verdict
    assert entry["unseen_share"] == pytest.approx(len(unknown) / len(sent))
    known = [index.code(v) for v in sent if index.code(v) is not None]
    observed = np.array([known.count(0), known.count(1), len(unknown)]) / len(sent)
    assert entry["psi"] == pytest.approx(psi(np.array([0.5, 0.5, 0.0]), observed))
    # The encoder agrees value by value: a known value sets its one-hot column.
    rows = schema.transform([{"zip": v, "c": "a"} for v in sent])
    assert rows[:, :2].sum(dim=1).tolist() == [float(index.code(v) is not None) for v in sent]


def test_a_monitor_refuses_a_reference_its_schema_does_not_match() -> None:
    schema = _legacy_schema()
    other = {"features": {"colour": {"kind": "categorical", "frequencies": {"red": 1.0}}}}
    with pytest.raises(ValueError, match=r"'colour' is categorical, .* are \['c', 'zip'\]"):
        DriftMonitor(other, schema=schema)
    unknown = {"features": {"c": {"kind": "categorical", "frequencies": {"a": 0.5, "q": 0.5}}}}
    with pytest.raises(ValueError, match="feature 'c': reference category 'q'"):
        DriftMonitor(unknown, schema=schema)


def test_predicted_labels_are_compared_by_their_exact_class_names() -> None:
    assert label_psi({"no": 0.6, "yes": 0.4}, ["no"] * 6 + ["yes"] * 4) == 0.0
    assert label_psi({"1": 1.0}, ["1.0"]) == pytest.approx(psi(np.eye(2)[0], np.eye(2)[1]))


def test_ks_critical_value() -> None:
    assert ks_critical(400) == pytest.approx(1.628 / 20)


def reference() -> dict[str, object]:
    rng = np.random.default_rng(4)
    return {
        "n": 20_000,
        "features": {
            "x": {"kind": "numeric", "quantiles": quantiles(rng.normal(size=20_000))},
            "c": {"kind": "categorical", "frequencies": {"a": 0.7, "b": 0.3}},
        },
        "prediction": {"no": 0.6, "yes": 0.4},
    }


def test_report_waits_for_a_full_window_then_aggregates_the_drift_index() -> None:
    rng = np.random.default_rng(5)
    ref = reference()
    quiet = {"x": rng.normal(size=50).tolist(), "c": ["a"] * 35 + ["b"] * 15}
    early = drift_report(ref, quiet, min_window=100)
    assert (early["ready"], early["drift_index"], early["drifting"]) == (False, None, False)
    columns = {"x": rng.normal(size=500).tolist(), "c": ["a"] * 350 + ["b"] * 150}
    report = drift_report(ref, columns, ["no"] * 300 + ["yes"] * 200, min_window=100)
    features = report["features"]
    assert report["drift_index"] == pytest.approx((features["x"]["psi"] + features["c"]["psi"]) / 2)
    assert not report["drifting"]
    assert features["x"]["ks"] < report["ks_critical"]
    assert features["c"]["status"] == "stable"
    assert report["prediction_psi"] == pytest.approx(
        psi(np.array([0.6, 0.4]), np.array([0.6, 0.4]))
    )
    shifted = {"x": (rng.normal(size=500) + 2).tolist(), "c": ["b"] * 500}
    report = drift_report(ref, shifted, min_window=100)
    assert report["drifting"]
    assert report["features"]["x"]["ks_shifted"]
    assert report["features"]["c"]["status"] == "shifted"


def test_monitor_keeps_a_rolling_window() -> None:
    rng = np.random.default_rng(6)
    monitor = DriftMonitor(reference(), window=200, min_window=100)
    shifted = [{"x": float(v) + 3, "c": "b"} for v in rng.normal(size=200)]
    monitor.observe(shifted, ["yes"] * 200)
    assert monitor.report()["drifting"]
    values = rng.normal(size=200)
    quiet = [{"x": float(v), "c": "a" if i % 10 < 7 else "b"} for i, v in enumerate(values)]
    monitor.observe(quiet, ["no"] * 200)
    report = monitor.report()
    assert report["window"] == 200
    assert not report["drifting"]


def test_float32_round_off_in_the_reference_does_not_look_like_drift() -> None:
    # A registry rebuilds raw values from float32 rows: 0 comes back as -3e-05.
    rng = np.random.default_rng(7)
    gains = np.where(rng.random(5000) < 0.9, 0.0, rng.integers(1, 99_999, 5000)).astype(float)
    center, scale = gains.mean(), gains.std()
    rebuilt = ((gains - center) / scale).astype(np.float32).astype(np.float64) * scale + center
    assert rebuilt.min() != 0.0
    window = np.where(rng.random(400) < 0.9, 0.0, rng.integers(1, 99_999, 400)).astype(float)
    cdf = reference_cdf(quantiles(rebuilt), round_off=True)
    assert numeric_psi(cdf, window) < 0.05
    assert ks_statistic(cdf, window) < ks_critical(400)
    # Taken as exact, the same rebuilt quantiles would misplace the zeros.
    assert ks_statistic(reference_cdf(quantiles(rebuilt)), window) > ks_critical(400)


def test_only_references_rebuilt_from_float32_rows_are_snapped() -> None:
    assert has_round_off({"features": {}})  # written before numeric_source existed
    assert has_round_off({"numeric_source": "encoded"})
    assert not has_round_off({"numeric_source": "raw"})
    exact = reference_cdf([0.0] * 50 + [float(k) for k in range(1, 52)])
    # An exact reference keeps a value 1e-9 above its point mass off it.
    assert exact.snap(np.array([1e-9]))[0] == 1e-9
    assert reference_cdf(exact.q, round_off=True).snap(np.array([1e-9]))[0] == 0.0
