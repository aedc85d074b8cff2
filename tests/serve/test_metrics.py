"""The serving gauges stay in the scrape between events: each last value is
set again every few seconds (``regtune.serve.metrics.GaugeKeeper``)."""

from __future__ import annotations

import time
from typing import Any

from regtune.serve.metrics import GAUGE_REFRESH_S, GaugeKeeper


class _Gauge:
    def __init__(self) -> None:
        self.calls: list[tuple[float, dict[str, str]]] = []

    def set(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append((value, dict(tags)))


def test_replay_sets_each_gauge_and_tag_set_to_its_last_value() -> None:
    keeper = GaugeKeeper(refresh_s=3600)
    drift, canary = _Gauge(), _Gauge()
    keeper.set(drift, 0.2, {"model": "a"})
    keeper.set(drift, 0.3, {"model": "a"})  # replaces 0.2
    keeper.set(drift, 0.05, {"model": "b"})
    keeper.set(canary, 0.1, {"model": "a"})
    assert drift.calls == [(0.2, {"model": "a"}), (0.3, {"model": "a"}), (0.05, {"model": "b"})]
    assert keeper.replay() == 3
    assert drift.calls[3:] == [(0.3, {"model": "a"}), (0.05, {"model": "b"})]
    assert canary.calls == [(0.1, {"model": "a"}), (0.1, {"model": "a"})]


def test_the_keeper_sets_the_last_values_again_on_its_own() -> None:
    keeper = GaugeKeeper(refresh_s=0.05)
    gauge: Any = _Gauge()
    keeper.set(gauge, 0.8, {"model": "m"})
    deadline = time.monotonic() + 10
    while len(gauge.calls) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(gauge.calls) >= 4 and set(c[0] for c in gauge.calls) == {0.8}
    # Often enough for Ray, which drops a gauge unset for about 20 s.
    assert GAUGE_REFRESH_S <= 10


def test_a_replay_never_writes_an_old_value_over_a_newer_one() -> None:
    """A canary rolled back to 0 while a replay is setting its old 0.1 stays 0."""
    import threading

    entered, release = threading.Event(), threading.Event()

    class _Slow(_Gauge):
        block = False

        def set(self, value: float, tags: dict[str, str]) -> None:
            if self.block:
                entered.set()
                release.wait(10)
            super().set(value, tags)

    keeper = GaugeKeeper(refresh_s=3600)
    canary = _Slow()
    keeper.set(canary, 0.1, {"model": "m"})
    canary.block = True
    replay = threading.Thread(target=keeper.replay)
    replay.start()
    assert entered.wait(10)
    canary.block = False
    rollback = threading.Thread(target=keeper.set, args=(canary, 0.0, {"model": "m"}))
    rollback.start()
    time.sleep(0.2)
    assert rollback.is_alive()  # waits for the replay it would race
    release.set()
    replay.join(10)
    rollback.join(10)
    assert canary.calls[-1] == (0.0, {"model": "m"})
    keeper.replay()
    assert canary.calls[-1] == (0.0, {"model": "m"})


def test_close_stops_the_refreshing_thread() -> None:
    keeper = GaugeKeeper(refresh_s=0.02)
    gauge = _Gauge()
    keeper.set(gauge, 0.5, {"model": "m"})
    time.sleep(0.1)
    keeper.close()
    settled = len(gauge.calls)
    time.sleep(0.15)
    assert len(gauge.calls) == settled
