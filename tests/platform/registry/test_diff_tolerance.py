"""``models diff`` does not list float noise (the same metric measured again, float32
rounding) as a change: it showed ``test_ece 0.0953175 -> 0.0953175``."""

from __future__ import annotations

from regtune.platform.registry.diff import REL_TOL, diff_meta, same_value


def test_floats_within_the_tolerance_are_not_a_change() -> None:
    a = {"metrics": {"test_ece": 0.09531746059656143, "test_acc": 0.9, "n_params": 650.0}}
    b = {"metrics": {"test_ece": 0.09531746804714203, "test_acc": 0.91, "n_params": 650}}
    assert diff_meta(a, b) == {"metrics": [("metrics.test_acc", 0.9, 0.91)]}


def test_what_the_tolerance_keeps_and_drops() -> None:
    assert same_value(1.0, 1.0 + REL_TOL / 10)
    assert not same_value(1.0, 1.0 + REL_TOL * 10)
    assert not same_value(0.0, 1e-12)  # relative: a change from zero is a change
    assert same_value(3, 3.0) and not same_value(3, 4)
    assert not same_value(1, True) and not same_value(0, False)  # JSON true is not 1
    assert not same_value(None, 0.0) and not same_value("1", 1)
    assert same_value([1.0], [1.0]) and not same_value({"a": 1}, {"a": 2})
