"""The HTTP routes in process (httpx over ASGI, a real service and model): refusals,
their counting, feedback and the replies' shapes; no Ray and no socket needed."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx
import pytest

from regtune.errors import SpecError
from regtune.platform.registry.postprocess import PostProcessing
from regtune.serve.drift import DriftMonitor, DriftWindow
from regtune.serve.feedback import FeedbackTracker, LabelledWindow
from regtune.serve.http import create_api, token_digest
from regtune.serve.metrics import ServeMetrics
from regtune.serve.service import ModelService, load_service
from regtune.serve.settings import ServeSettings
from tests.serve.conftest import MODEL, Registry, loopback_uvicorn
from tests.serve.test_service import raw_records

PREDICT = f"/v1/models/{MODEL}:predict"
FEEDBACK = f"/v1/models/{MODEL}/feedback"
TOKEN = "t0ken"


class Recorder(ServeMetrics):
    """Keeps what the service records, to check it."""

    def __init__(self) -> None:
        self.rejections: list[tuple[str, int]] = []
        self.requests: list[tuple[str, int | str]] = []
        self.drifts: list[tuple[str, float]] = []
        self.feedbacks: list[tuple[str, float, float]] = []

    def request(
        self, model: str, version: int | str, latency_ms: float, labels: Sequence[str]
    ) -> None:
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
    assert recorder.requests == [(MODEL, "1")]


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
    assert labelled.json() == {"labelled": 2}  # an acknowledgement; the metrics are at GET
    assert "already has feedback" in again.json()["error"]
    assert summary.json()["n"] == 2  # labelled once, whatever the id's reuse
    assert long_id.json()["field"] == "X-Request-ID"
    assert "257 characters; at most 256" in long_id.json()["error"]


class WhereMonitor(DriftMonitor):
    """A drift monitor that notes the thread each report ran on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads: list[int] = []

    def report_of(self, window: DriftWindow) -> dict[str, Any]:
        self.threads.append(threading.get_ident())
        return super().report_of(window)


class WhereTracker(FeedbackTracker):
    """A feedback tracker that notes the thread each summary ran on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads: list[int] = []

    def summary_of(self, window: LabelledWindow) -> dict[str, Any]:
        self.threads.append(threading.get_ident())
        return super().summary_of(window)


def test_gauges_and_summaries_are_computed_off_the_event_loop(registry: Registry) -> None:
    service, recorder = make(registry)
    primary = service.primary
    monitor = WhereMonitor(primary.version.reference, window=10, min_window=5)
    tracker = WhereTracker(primary.classes, primary.schema.sensitive_values)
    service.monitor, service.feedback = monitor, tracker
    service.gauge_every_s = 0.0  # a refresh is due on every request
    batch = {"instances": raw_records(registry, 6)}
    truth = [str(v) for v in registry.dataset.raw_test.iloc[0:6][registry.dataset.schema.label]]

    async def scenario(client: httpx.AsyncClient) -> tuple[int, list[int], list[int]]:
        loop_thread = threading.get_ident()
        reply = await client.post(PREDICT, json=batch, headers={"x-request-id": "g-1"})
        assert reply.status_code == 200
        # The answer did not wait for the drift report: it runs after, in the background.
        assert recorder.drifts == [] and service.refreshing is not None
        await service.refreshing
        assert [name for name, _ in recorder.drifts] == [MODEL]
        drifts = len(recorder.drifts)
        ack = await client.post(FEEDBACK, json={"request_id": "g-1", "labels": truth})
        assert ack.json() == {"labelled": 6} and recorder.feedbacks == []
        assert service.refreshing is not None
        await service.refreshing
        assert len(recorder.feedbacks) == 1 and len(recorder.drifts) == drifts + 1
        summary = (await client.get(FEEDBACK)).json()
        assert summary["n"] == 6 and recorder.feedbacks[-1][1] == summary["accuracy"]
        assert (await client.get(f"/v1/models/{MODEL}/drift")).json()["window"] == 6
        return loop_thread, monitor.threads, tracker.threads

    loop_thread, drift_threads, summary_threads = run(service, scenario)
    assert len(drift_threads) == 3 and len(summary_threads) == 2
    assert loop_thread not in drift_threads + summary_threads


def test_unknown_routes_and_methods_are_refused_in_the_documented_shape(
    registry: Registry,
) -> None:
    service, recorder = make(registry)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.get("/v2/nothing"), await client.post("/v1/models", json={}),
                await client.get(PREDICT)]  # fmt: skip

    missing, method, get_predict = run(service, scenario)
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "no route GET /v2/nothing; see /docs for the routes",
        "field": "path",
        "allowed": "a route listed at /docs",
    }
    assert method.status_code == 405 and method.headers["allow"] == "GET"
    assert method.json() == {
        "error": "POST is not allowed on /v1/models; allowed: GET",
        "field": "method",
        "allowed": "GET",
    }
    # GET on the predict route: the route exists for POST, not "no model adult:predict".
    assert get_predict.status_code == 405 and get_predict.headers["allow"] == "POST"
    assert get_predict.json() == {
        "error": f"GET is not allowed on {PREDICT}; allowed: POST",
        "field": "method",
        "allowed": "POST",
    }
    assert recorder.rejections == [(MODEL, 404), (MODEL, 405), (MODEL, 405)]


def test_every_wrong_method_on_an_action_route_names_that_routes_methods(
    registry: Registry,
) -> None:
    service, recorder = make(registry)
    explain = f"/v1/models/{MODEL}:explain"

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.put(PREDICT, json={}), await client.delete(PREDICT),
                await client.patch(PREDICT, json={}), await client.put(FEEDBACK, json={}),
                await client.post(explain, json={}), await client.get(explain),
                await client.delete(f"/v1/models/{MODEL}")]  # fmt: skip

    put, delete, patch, feedback, post_explain, get_explain, describe = run(service, scenario)
    for reply, method in ((put, "PUT"), (delete, "DELETE"), (patch, "PATCH")):
        assert reply.status_code == 405 and reply.headers["allow"] == "POST", reply.text
        assert reply.json() == {
            "error": f"{method} is not allowed on {PREDICT}; allowed: POST",
            "field": "method",
            "allowed": "POST",
        }
    assert feedback.status_code == 405 and feedback.headers["allow"] == "GET, POST"
    assert describe.status_code == 405 and describe.headers["allow"] == "GET"
    # No route takes a verb other than predict: no method would do, so no 405.
    for reply, method in ((post_explain, "POST"), (get_explain, "GET")):
        assert reply.status_code == 404 and "allow" not in reply.headers
        assert reply.json()["error"] == f"no route {method} {explain}; see /docs for the routes"
    assert recorder.rejections == [(MODEL, s) for s in (405, 405, 405, 405, 404, 404, 405)]


def test_further_problems_are_counted_in_words(registry: Registry) -> None:
    service, _ = make(registry)
    bad = {**raw_records(registry, 1)[0], "age": "old"}

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.post(PREDICT, json={"instances": [bad] * n}) for n in (1, 2, 3)]

    one, two, three = (reply.json()["error"] for reply in run(service, scenario))
    assert "more problem" not in one
    assert two.endswith("(and 1 more problem in this request)")
    assert three.endswith("(and 2 more problems in this request)")


def test_the_sensitive_attribute_is_described_as_it_is_validated(registry: Registry) -> None:
    """A version with per-group post-processing refuses any value of its sensitive
    attribute that is not a group: its description says "one of" the groups, not
    that unseen categories are accepted; a plain version does accept them."""
    primary = registry.versions["primary"]
    schema = primary.schema
    assert schema.sensitive == "sex" and "sex" in schema.input_names()
    groups = list(schema.sensitive_values)
    post = PostProcessing(tuple(groups), thresholds=(0.3, 0.6))
    settings = ServeSettings(model=f"{MODEL}:1", registry=registry.root)
    grouped = ModelService(settings, dataclasses.replace(primary, postprocessing=post))
    plain = ModelService(settings, primary)
    record = raw_records(registry, 1)[0]
    missing = {k: v for k, v in record.items() if k != "sex"}

    bodies = [[missing], [{**record, "sex": None}], [{**record, "sex": "Other"}]]

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        described = await client.get(f"/v1/models/{MODEL}")
        return [described, *[await client.post(PREDICT, json={"instances": b}) for b in bodies]]

    described, without, null, other = run(grouped, scenario)
    allowed = f"one of {groups}"
    assert described.json()["inputs"]["sex"] == allowed
    for reply in (without, null, other):
        assert reply.status_code == 422 and reply.json()["allowed"] == allowed, reply.text
        assert "unseen" not in reply.json()["error"]
    described, _, _, other = run(plain, scenario)
    assert "unseen categories encode as zeros" in described.json()["inputs"]["sex"]
    assert other.status_code == 200, other.text


def test_rejected_categories_are_described_and_counted_as_values(registry: Registry) -> None:
    service, _ = make(registry, unknown_categories="reject")
    record = {**raw_records(registry, 1)[0], "workclass": "Martian"}

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.get(f"/v1/models/{MODEL}"),
                await client.post(PREDICT, json={"instances": [record]})]  # fmt: skip

    described, refused = run(service, scenario)
    vocab = sorted(registry.versions["primary"].schema.value_index("workclass").names)
    assert len(vocab) > 5
    hint = described.json()["inputs"]["workclass"]
    assert hint.startswith("one of ") and hint.endswith(f"({len(vocab)} values)"), hint
    assert refused.status_code == 422
    assert refused.json()["error"].endswith(f"({len(vocab)} values)"), refused.text


def test_bodies_are_read_as_sent_and_refused_when_they_cannot_be(registry: Registry) -> None:
    """A compressed body gets a 415 naming Content-Encoding (not "invalid JSON"); a
    byte order mark and a key written twice are named, on both POST routes."""
    service, recorder = make(registry)
    record = raw_records(registry, 1)[0]
    good = json.dumps({"instances": [record]}).encode()
    text = json.dumps(record)
    twice = ('{"instances": [' + text[:-1] + ', "age": 80}]}').encode()
    feedback_twice = b'{"request_id": "r-1", "labels": ["<=50K"], "request_id": "r-2"}'

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        gzip_ = {"content-encoding": "gzip"}
        return [
            await client.post(PREDICT, content=gzip.compress(good), headers=gzip_),
            await client.post(FEEDBACK, content=gzip.compress(b"{}"), headers=gzip_),
            await client.post(PREDICT, content=good, headers={"content-encoding": "Identity"}),
            await client.post(PREDICT, content=b"\xef\xbb\xbf" + good),
            await client.post(FEEDBACK, content=b'\xef\xbb\xbf{"request_id": "r-1"}'),
            await client.post(PREDICT, content=twice, headers={"x-request-id": "r-1"}),
            await client.post(FEEDBACK, content=feedback_twice),
        ]

    replies = run(service, scenario)
    assert [r.status_code for r in replies] == [415, 415, 200, 400, 400, 422, 422]
    for reply in replies[:2]:
        assert reply.json() == {
            "error": "the body is sent with Content-Encoding: gzip; this server reads only "
            "bodies sent as they are (Content-Encoding: identity, or no such header): send "
            "the JSON uncompressed",
            "field": "Content-Encoding",
            "allowed": "identity",
        }
    for reply in replies[3:5]:
        assert "starts with a UTF-8 byte order mark" in reply.json()["error"], reply.text
    assert replies[5].json()["field"] == "instances[0].age"
    assert replies[5].json()["error"].startswith('instances[0] has the key "age" twice')
    assert replies[6].json()["field"] == "request_id"
    assert recorder.rejections == [(MODEL, s) for s in (415, 415, 400, 400, 422, 422)]


def test_a_request_id_is_read_as_utf8_as_ray_serve_reads_it(registry: Registry) -> None:
    """Ray Serve's proxy and direct ingress read X-Request-ID as UTF-8: the id a client
    wrote comes back as written and its feedback finds it; bytes that are not UTF-8
    are refused by name."""
    service, _ = make(registry)
    batch = {"instances": raw_records(registry, 1)}
    rid = "commande-é-北京"

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.post(PREDICT, json=batch, headers=[(b"x-request-id", rid.encode())]),
            await client.post(FEEDBACK, json={"request_id": rid, "labels": ["<=50K"]}),
            await client.post(PREDICT, json=batch, headers=[(b"x-request-id", b"\xff\xfe")]),
        ]

    answered, labelled, not_utf8 = run(service, scenario)
    assert answered.status_code == 200 and answered.json()["request_id"] == rid
    assert labelled.status_code == 200 and labelled.json() == {"labelled": 1}
    assert not_utf8.status_code == 400
    assert not_utf8.json()["field"] == "X-Request-ID"
    assert not_utf8.json()["error"].startswith("X-Request-ID is not UTF-8 text")


#: A body deadline short enough for a test; the default is DEFAULT_BODY_TIMEOUT_S.
DEADLINE_S = 0.5
#: The start of a body whose Content-Length promises far more (under the 20,000-byte cap).
STALLED = b'{"insta'
PROMISED = {"content-length": "15000", "content-type": "application/json"}


def test_a_stalled_body_is_answered_408_within_the_deadline_and_frees_its_slot(
    registry: Registry,
) -> None:
    """A client that sends 7 of the 15,000 bytes it promised and then stalls held its
    request slot (one of max_ongoing_requests) for as long as it kept the connection."""
    service, recorder = make(registry, body_timeout_s=DEADLINE_S)
    batch = {"instances": raw_records(registry, 1)}

    async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], float, int]:
        never = asyncio.Event()

        async def stalled_body() -> AsyncIterator[bytes]:
            yield STALLED
            await never.wait()

        start = time.perf_counter()
        # Old code: never answered (the bound only keeps the test from hanging).
        stalled = await asyncio.wait_for(
            asyncio.gather(
                client.post(PREDICT, content=stalled_body(), headers=PROMISED),
                client.post(FEEDBACK, content=stalled_body(), headers=PROMISED),
            ),
            timeout=20 * DEADLINE_S,
        )
        took = time.perf_counter() - start
        reading = service.reading
        return [*stalled, await client.post(PREDICT, json=batch)], took, reading

    (predict, feedback, good), took, reading = run(service, scenario)
    assert DEADLINE_S <= took < 10 * DEADLINE_S, took
    for reply in (predict, feedback):
        assert reply.status_code == 408, reply.text
        assert reply.headers["connection"] == "close"
        assert reply.json() == {
            "error": "the body did not all arrive within 0.5 s (7 of the 15000 bytes of its "
            "Content-Length came); send the whole body without pausing (a Content-Length "
            "the body falls short of waits for the rest)",
            "field": "body",
            "allowed": "a body that arrives within 0.5 s",
        }
    assert reading == 0  # the predict route's count of requests still being read
    assert good.status_code == 200, good.text
    assert recorder.rejections == [(MODEL, 408), (MODEL, 408)]


def test_a_stalled_body_on_a_real_connection_is_answered_and_the_connection_closed(
    registry: Registry,
) -> None:
    """Over a socket, as Ray Serve's proxy and direct ingress serve the app (uvicorn):
    the stalled client gets its 408 and then end of stream, not an open connection."""
    service, _ = make(registry, body_timeout_s=DEADLINE_S)
    api = create_api(service)
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: regtune\r\nContent-Type: application/json\r\n"
        "Content-Length: 15000\r\n\r\n"
    ).encode()

    async def main() -> tuple[bytes, float]:
        async with loopback_uvicorn(api) as (host, port):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(head + STALLED)
                await writer.drain()
                start = time.perf_counter()
                # Read to end of stream: the server must answer and then close.
                answer = await asyncio.wait_for(reader.read(), timeout=20 * DEADLINE_S)
                took = time.perf_counter() - start
            finally:
                writer.close()
        return answer, took

    answer, took = asyncio.run(main())
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert b'"field": "body"' in answer
    assert took < 10 * DEADLINE_S, took


def test_a_body_that_arrives_in_pieces_within_the_deadline_is_read(registry: Registry) -> None:
    service, _ = make(registry, body_timeout_s=5.0)
    good = json.dumps({"instances": raw_records(registry, 2)}).encode()

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        async def pieces() -> AsyncIterator[bytes]:
            for i in range(0, len(good), 50):
                await asyncio.sleep(0.01)
                yield good[i : i + 50]

        headers = {"content-length": str(len(good)), "content-type": "application/json"}
        return await client.post(PREDICT, content=pieces(), headers=headers)

    reply = run(service, scenario)
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["predictions"]) == 2


def test_the_body_deadline_is_a_setting_with_a_documented_default() -> None:
    from regtune.serve.settings import DEFAULT_BODY_TIMEOUT_S, parse_settings

    assert ServeSettings(model="m").body_timeout_s == DEFAULT_BODY_TIMEOUT_S == 10.0
    assert parse_settings({"model": "m", "body_timeout_s": 2.5}).body_timeout_s == 2.5
    for bad in (0, -1, float("inf"), 3601):
        with pytest.raises(SpecError, match=r"serve\.body_timeout_s"):
            parse_settings({"model": "m", "body_timeout_s": bad})
