"""The HTTP routes in process (httpx over ASGI, a real service and model): refusals,
their counting, feedback and the replies' shapes; no Ray and no socket needed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx

from regtune.serve.http import create_api, token_digest
from regtune.serve.metrics import ServeMetrics
from regtune.serve.service import ModelService, load_service
from regtune.serve.settings import ServeSettings
from tests.serve.conftest import MODEL, Registry
from tests.serve.test_service import raw_records

PREDICT = f"/v1/models/{MODEL}:predict"
FEEDBACK = f"/v1/models/{MODEL}/feedback"
TOKEN = "t0ken"


class Recorder(ServeMetrics):
    """Keeps what the service records, to check it."""

    def __init__(self) -> None:
        self.rejections: list[tuple[str, int]] = []
        self.requests: list[tuple[str, int]] = []
        self.drifts: list[tuple[str, float]] = []
        self.feedbacks: list[tuple[str, float, float]] = []

    def request(self, model: str, version: int, latency_ms: float, labels: Sequence[str]) -> None:
        self.requests.append((model, version))

    def rejected(self, model: str, status: int) -> None:
        self.rejections.append((model, status))

    def drift(self, model: str, index: float) -> None:
        self.drifts.append((model, index))

    def feedback(self, model: str, accuracy: float, ece: float) -> None:
        self.feedbacks.append((model, accuracy, ece))


def make(registry: Registry, **settings: Any) -> tuple[ModelService, Recorder]:
    recorder = Recorder()
    config = ServeSettings(
        model=f"{MODEL}:1", registry=registry.root, max_body_bytes=20_000, **settings
    )
    return load_service(config, metrics=recorder), recorder


T = TypeVar("T")
Scenario = Callable[[httpx.AsyncClient], Awaitable[T]]


def run(service: ModelService, scenario: Scenario[T], token: str | None = None) -> T:
    """Run ``scenario`` with a client of the service's app, on one event loop."""
    api = create_api(service, token_sha256=None if token is None else token_digest(token))

    async def main() -> T:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://regtune") as client:
            return await scenario(client)

    return asyncio.run(main())


def test_every_refusal_is_counted_under_the_served_models_name(registry: Registry) -> None:
    service, recorder = make(registry)
    auth = {"authorization": f"Bearer {TOKEN}"}
    good = {"instances": raw_records(registry, 1)}
    oversized = b'{"instances": [' + b" " * 20_001 + b"]}"
    unknown = {"request_id": "never", "labels": ["<=50K"]}

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        replies = [
            await client.post(PREDICT, json=good),
            await client.post("/v1/models/random-1:predict", json=good, headers=auth),
            await client.get("/v1/models/random-2/drift", headers=auth),
            await client.post(PREDICT, content=oversized, headers=auth),
            await client.post(FEEDBACK, json=unknown, headers=auth),
            await client.post(PREDICT, json={"instances": []}, headers=auth),
            await client.post(PREDICT, json=good, headers=auth),
        ]
        return [r.status_code for r in replies]

    assert run(service, scenario, TOKEN) == [401, 404, 404, 413, 404, 422, 200]
    assert recorder.rejections == [
        (MODEL, 401), (MODEL, 404), (MODEL, 404), (MODEL, 413), (MODEL, 404), (MODEL, 422)
    ]  # fmt: skip
    assert recorder.requests == [(MODEL, 1)]


def test_feedback_labels_ids_and_reused_ids(registry: Registry) -> None:
    service, _ = make(registry)
    batch = {"instances": raw_records(registry, 2)}

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        first = await client.post(PREDICT, json=batch, headers={"x-request-id": "r-1"})
        retry = await client.post(
            PREDICT, json={"instances": raw_records(registry, 1)}, headers={"x-request-id": "r-1"}
        )
        return [
            first,
            retry,
            await client.post(FEEDBACK, json={"request_id": "r-1", "labels": [1.5, "<=50K"]}),
            await client.post(FEEDBACK, json={"request_id": "r-1", "labels": ["<=50K", ">50K"]}),
            await client.post(PREDICT, json=batch, headers={"x-request-id": "r-1"}),
            await client.post(FEEDBACK, json={"request_id": "r-1", "labels": ["<=50K", ">50K"]}),
            await client.get(FEEDBACK),
            await client.post(PREDICT, json=batch, headers={"x-request-id": "x" * 257}),
            await client.post(PREDICT, json=batch, headers={"x-request-id": "y" * 256}),
        ]

    replies = run(service, scenario)
    assert [r.status_code for r in replies] == [200, 200, 422, 200, 200, 409, 200, 422, 200]
    _, _, float_label, labelled, _, again, summary, long_id, _ = replies
    assert float_label.json() == {
        "error": "labels[0] is 1.5; expected one of ['<=50K', '>50K']",
        "field": "labels[0]",
        "allowed": "one of ['<=50K', '>50K']",
    }
    # The retry with the same id kept the first answer: its two records are labelled.
    assert labelled.json()["labelled"] == 2
    assert "already has feedback" in again.json()["error"]
    assert summary.json()["n"] == 2  # labelled once, whatever the id's reuse
    assert long_id.json()["field"] == "X-Request-ID"
    assert "257 characters; at most 256" in long_id.json()["error"]
