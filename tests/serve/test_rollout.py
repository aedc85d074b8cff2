"""Canary assignment by crc32 of the request id, and the rollback rule."""

from __future__ import annotations

import zlib

import pytest

from regtune.serve.rollout import (
    BUCKETS,
    Observation,
    RolloutLimits,
    RolloutState,
    breaches,
    bucket,
    routes_to_canary,
)


def test_assignment_is_crc32_of_the_id_and_stable() -> None:
    assert bucket("req-1") == zlib.crc32(b"req-1") % BUCKETS
    ids = [f"req-{i}" for i in range(5000)]
    first = [routes_to_canary(i, 0.1) for i in ids]
    assert first == [routes_to_canary(i, 0.1) for i in ids]
    assert abs(sum(first) / len(ids) - 0.1) < 0.015
    assert not any(routes_to_canary(i, 0.0) for i in ids)
    assert all(routes_to_canary(i, 1.0) for i in ids)
    # A larger weight keeps every request the smaller one sent to the canary.
    assert all(routes_to_canary(i, 0.3) for i, c in zip(ids, first, strict=True) if c)


def ok(latency: float = 5.0, disagreements: int = 0) -> Observation:
    return Observation(error=False, latency_ms=latency, records=4, disagreements=disagreements)


def test_no_verdict_before_min_requests_then_each_limit_fires() -> None:
    limits = RolloutLimits(max_error_rate=0.1, max_p99_ms=50.0, max_disagreement=0.2,
                           min_requests=10, window=50)  # fmt: skip
    state = RolloutState(3, 0.2, limits)
    failed = Observation(error=True, latency_ms=1.0, records=4, disagreements=0)
    for _ in range(9):
        assert state.observe(failed) is None
    entry = state.observe(failed)
    assert entry is not None
    assert entry["reasons"] == ["error rate 1.000 > 0.1"]
    assert (state.weight, state.status) == (0.0, "rolled_back")
    assert state.route("anything") == "primary"
    assert state.snapshot()["rollback_log"] == [entry]
    assert state.observe(failed) is None  # logged once

    slow = RolloutState(3, 0.2, limits)
    for _ in range(9):
        slow.observe(ok(latency=5.0))
    entry = slow.observe(ok(latency=500.0))
    assert entry is not None and entry["reasons"][0].startswith("p99 latency")

    disagreeing = RolloutState(3, 0.2, limits)
    for _ in range(10):
        entry = disagreeing.observe(ok(disagreements=1))  # 1 of 4 records: 0.25 > 0.2
    assert entry is not None and entry["reasons"] == ["disagreement 0.250 > 0.2"]


def test_a_healthy_canary_stays() -> None:
    state = RolloutState(2, 0.5, RolloutLimits(min_requests=5, window=20))
    for _ in range(100):
        assert state.observe(ok()) is None
    assert state.status == "active"
    summary = state.snapshot()["stats"]
    assert (summary["requests"], summary["window_requests"]) == (100, 20)
    assert summary["error_rate"] == 0.0


def test_breaches_reads_a_summary() -> None:
    summary = {"window_requests": 30, "error_rate": 0.0, "p99_ms": 10.0, "disagreement": 0.5}
    assert breaches(summary, RolloutLimits(max_disagreement=0.5)) == []
    assert breaches(summary, RolloutLimits(max_disagreement=0.4)) == ["disagreement 0.500 > 0.4"]


def test_no_canary_means_primary_only() -> None:
    state = RolloutState(None, 0.5)
    assert (state.status, state.weight, state.route("x")) == ("none", 0.0, "primary")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_error_rate": 1.5}, "max_error_rate must be in [0, 1]"),
        ({"max_p99_ms": 0.0}, "max_p99_ms must be > 0"),
        ({"min_requests": 0}, "min_requests must be in [1, window=200]"),
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, float], words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        RolloutLimits(**kwargs)  # type: ignore[arg-type]


def test_bad_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="canary weight must be in"):
        RolloutState(2, 1.5)
