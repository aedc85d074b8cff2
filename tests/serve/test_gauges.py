"""The drift and feedback gauges follow the windows when traffic stops: a trailing
refresh brings them to the current window within one period of the last change,
requests arriving while a refresh is not due do not start one, and an idle
replica schedules nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from regtune.serve.service import ModelService, load_service
from regtune.serve.settings import ServeSettings
from tests.serve.conftest import MODEL, Registry
from tests.serve.test_http import Recorder
from tests.serve.test_service import body, raw_records

PERIOD_S = 0.3


def _service(registry: Registry) -> tuple[ModelService, Recorder]:
    recorder = Recorder()
    settings = ServeSettings(
        model=f"{MODEL}:1", registry=registry.root, drift_window=40, drift_min_window=5
    )
    service = load_service(settings, metrics=recorder)
    service.gauge_every_s = PERIOD_S
    service._gauge_at = -1e9  # up for a while: the first change refreshes at once
    return service, recorder


async def _settled(service: ModelService) -> None:
    """Wait until no refresh is running or scheduled (a few periods at most)."""
    for _ in range(200):
        if service.refreshing is None and getattr(service, "trailing", None) is None:
            return
        if service.refreshing is not None:
            await service.refreshing
        else:
            await asyncio.sleep(PERIOD_S / 10)
    raise AssertionError("the gauge refreshes never settled")


def test_the_gauges_reach_the_last_window_after_a_burst_with_no_traffic_after(
    registry: Registry,
) -> None:
    service, recorder = _service(registry)
    label = registry.dataset.schema.label
    truth = [str(v) for v in registry.dataset.raw_test[label].iloc[:30]]

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[int]]:
        await service.predict(MODEL, body(raw_records(registry, 10)), "a")
        assert service.refreshing is not None  # due: started at once, in the background
        await service.refreshing
        assert len(recorder.drifts) == 1
        # A burst inside one period: no refresh starts on these requests ...
        for i in (1, 2):
            records = raw_records(registry, 10, 10 * i)
            await service.predict(MODEL, body(records), f"r{i}")
        service.add_feedback(MODEL, json.dumps({"request_id": "a", "labels": truth[:10]}).encode())
        service.add_feedback(
            MODEL, json.dumps({"request_id": "r2", "labels": truth[20:30]}).encode()
        )
        assert service.refreshing is None
        assert len(recorder.drifts) == 1 and recorder.feedbacks == []
        # ... and with no traffic after it, a trailing refresh shows its end.
        await asyncio.sleep(2 * PERIOD_S)
        if service.refreshing is not None:
            await service.refreshing
        counts = [len(recorder.drifts), len(recorder.feedbacks)]
        # Idle: nothing changes, so nothing is scheduled or refreshed again.
        await asyncio.sleep(3 * PERIOD_S)
        assert service.refreshing is None and getattr(service, "trailing", None) is None
        assert [len(recorder.drifts), len(recorder.feedbacks)] == counts
        drift = await asyncio.to_thread(service.monitor.report)
        summary = await asyncio.to_thread(service.feedback.summary_of, service.feedback.snapshot())
        return drift, summary, counts

    drift, summary, counts = asyncio.run(scenario())
    assert drift["window"] == 30 and summary["n"] == 20
    assert recorder.drifts[-1] == (MODEL, drift["drift_index"])
    assert recorder.feedbacks and recorder.feedbacks[-1] == (
        MODEL,
        summary["accuracy"],
        summary["ece"],
    )
    assert counts == [2, 1]  # one refresh per period: the first request's, then the trailing one


def test_changes_while_a_refresh_runs_are_refreshed_one_period_after_it_started(
    registry: Registry,
) -> None:
    service, recorder = _service(registry)

    async def scenario() -> tuple[float, float, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await service.predict(MODEL, body(raw_records(registry, 10)), "a")
        running = service.refreshing
        assert running is not None
        await asyncio.sleep(0)  # the refresh takes its snapshot of the windows
        await service.predict(MODEL, body(raw_records(registry, 10, 10)), "b")
        await running  # without "b", which arrived after its snapshot: a trailing one follows
        await _settled(service)
        done = loop.time()
        return started, done, await asyncio.to_thread(service.monitor.report)

    started, done, drift = asyncio.run(scenario())
    assert len(recorder.drifts) == 2
    assert recorder.drifts[-1] == (MODEL, drift["drift_index"]) and drift["window"] == 20
    assert done - started >= PERIOD_S * 0.9  # at most one refresh per period
