"""The service without a web framework: a lone request skips the batcher, concurrent ones
share batches, and either way the answers are the in-process model's (groups included)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np

from regtune.serve.predictor import ModelOutputError
from regtune.serve.service import ModelService, Rows, load_service
from regtune.serve.settings import ServeSettings
from tests.serve.conftest import MODEL, Registry


class LoopBatcher:
    """``@serve.batch`` at wait 0 without Ray: what queued during one pass of the
    event loop is one batch (Serve's batcher needs a replica context)."""

    def __init__(self) -> None:
        self.service: ModelService | None = None
        self.pending: list[tuple[Rows, asyncio.Future[np.ndarray]]] = []
        self.sizes: list[int] = []

    async def __call__(self, rows: Rows) -> np.ndarray:
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self.pending.append((rows, future))
        if len(self.pending) == 1:
            asyncio.get_running_loop().call_soon(self.flush)
        return await future

    def flush(self) -> None:
        assert self.service is not None
        items, self.pending = self.pending, []
        self.sizes.append(len(items))
        try:
            outs = self.service.forward_batch([rows for rows, _ in items])
        except Exception as exc:  # as Serve's batcher does: every caller gets the error
            for _, future in items:
                future.set_exception(exc)
            return
        for (_, future), out in zip(items, outs, strict=True):
            future.set_result(out)


def raw_records(registry: Registry, n: int, start: int = 0) -> list[dict[str, Any]]:
    schema = registry.dataset.schema
    names = [*schema.input_names(), *([schema.sensitive] if schema.sensitive else [])]
    rows = registry.dataset.raw_test.iloc[start : start + n][list(dict.fromkeys(names))]
    return list(json.loads(rows.to_json(orient="records")))


def body(records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"instances": records}).encode()


def expected(service: ModelService, records: list[dict[str, Any]]) -> np.ndarray:
    return service.primary.predict(records)


def got(answer: dict[str, Any], classes: list[str]) -> np.ndarray:
    return np.array([[p["probabilities"][c] for c in classes] for p in answer["predictions"]])


def test_a_lone_request_skips_the_batcher_and_concurrent_ones_share_batches(
    registry: Registry,
) -> None:
    batcher = LoopBatcher()
    service = load_service(
        ServeSettings(model=f"{MODEL}:1", registry=registry.root), forward=batcher
    )
    batcher.service = service
    classes = service.primary.classes
    assert service.primary.schema.sensitive is not None  # groups travel with the rows

    async def run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        lone = await service.predict(MODEL, body(raw_records(registry, 3)), "lone")
        many = await asyncio.gather(
            *(
                service.predict(MODEL, body(raw_records(registry, 1 + i % 3, 10 * i)), f"r{i}")
                for i in range(8)
            )
        )
        return lone, list(many)

    lone, many = asyncio.run(run())
    assert service.lone_requests == 1
    assert (service.batches, service.batched_requests) == (1, 8)
    assert batcher.sizes == [8]
    np.testing.assert_allclose(got(lone, classes), expected(service, raw_records(registry, 3)))
    for i, answer in enumerate(many):
        records = raw_records(registry, 1 + i % 3, 10 * i)
        np.testing.assert_allclose(got(answer, classes), expected(service, records), rtol=1e-6)
        labels = service.primary.labels(expected(service, records), service.primary.groups(records))
        assert [p["label"] for p in answer["predictions"]] == labels
    described = service.describe(MODEL)["batching"]
    assert described["lone_requests"] == 1 and described["mean_batch_requests"] == 8.0
    # Feedback keeps each request's groups: the summary sees every labelled record.
    truth = [str(v) for v in registry.dataset.raw_test.iloc[0:3][registry.dataset.schema.label]]
    added = service.add_feedback(
        MODEL, json.dumps({"request_id": "lone", "labels": truth}).encode()
    )
    assert added["labelled"] == 3


def test_without_a_batcher_every_request_runs_directly(registry: Registry) -> None:
    service = load_service(ServeSettings(model=f"{MODEL}:1", registry=registry.root))

    async def run() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                *(
                    service.predict(MODEL, body(raw_records(registry, 2, i)), f"d{i}")
                    for i in range(4)
                )
            )
        )

    answers = asyncio.run(run())
    assert (service.batches, service.lone_requests) == (0, 0)
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(
            got(answer, service.primary.classes), expected(service, raw_records(registry, 2, i))
        )


def test_a_request_with_non_finite_output_fails_alone_and_its_batch_mates_are_answered(
    registry: Registry,
) -> None:
    batcher = LoopBatcher()
    service = load_service(
        ServeSettings(model=f"{MODEL}:1", registry=registry.root), forward=batcher
    )
    batcher.service = service
    records = raw_records(registry, 2)
    groups = service.primary.groups(records)
    good = service.primary.encode(records)
    bad = good.clone()
    bad[1, 0] = float("inf")  # what an input beyond float32 would have become

    async def run() -> list[Any]:
        return list(
            await asyncio.gather(
                service._forward(good, groups),
                service._forward(bad, groups),
                service._forward(good, groups),
                return_exceptions=True,
            )
        )

    first, failed, third = asyncio.run(run())
    assert batcher.sizes == [3]
    assert isinstance(failed, ModelOutputError)
    assert "non-finite probabilities for 1 of 2 records" in str(failed)
    for answer in (first, third):
        np.testing.assert_allclose(answer, expected(service, records), rtol=1e-6)


def test_the_feedback_cap_is_the_served_settings(registry: Registry) -> None:
    settings = ServeSettings(model=f"{MODEL}:1", registry=registry.root, feedback_records=123)
    assert load_service(settings).feedback.max_records == 123
