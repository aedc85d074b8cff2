"""The Serve application over real HTTP on 127.0.0.1 (one Serve instance for the module),
and its metrics as Ray's Prometheus endpoint serves them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from regtune.serve.rollout import routes_to_canary
from tests.serve.conftest import MODEL, Served

PREDICT = f"/v1/models/{MODEL}:predict"


def records(served: Served, n: int, start: int = 0) -> list[dict[str, Any]]:
    """Raw held-out records (test split) as a client has them, without the label."""
    raw = served.registry.dataset.raw_test
    schema = served.registry.dataset.schema
    rows = raw.iloc[start : start + n][schema.input_names()]
    return json.loads(rows.to_json(orient="records"))


def labels(served: Served, n: int, start: int = 0) -> list[str]:
    raw = served.registry.dataset.raw_test
    return [str(v) for v in raw.iloc[start : start + n][served.registry.dataset.schema.label]]


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base, timeout=30.0) as c:
        yield c


def in_process(served: Served, key: str, batch: list[dict[str, Any]]) -> np.ndarray:
    version = served.registry.versions[key]
    with torch.inference_mode():
        logits = version.module(version.schema.transform(batch))
    return torch.softmax(logits, dim=1).double().numpy()


def test_predictions_over_http_equal_the_in_process_model(
    served: Served, client: httpx.Client
) -> None:
    batch = records(served, 64)
    primary_id = next(f"eq-{i}" for i in range(100) if not routes_to_canary(f"eq-{i}", 0.3))
    reply = client.post(PREDICT, json={"instances": batch}, headers={"x-request-id": primary_id})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["model_name"], body["model_version"], body["request_id"]) == (MODEL, 1, primary_id)
    expected = in_process(served, "primary", batch)
    classes = served.registry.versions["primary"].classes
    got = np.array([[p["probabilities"][c] for c in classes] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert [p["label"] for p in body["predictions"]] == [classes[i] for i in expected.argmax(1)]


def test_routes_list_describe_and_document_the_model(served: Served, client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "model": MODEL, "version": 1}
    (entry,) = client.get("/v1/models").json()["models"]
    assert entry["canary"] == {"name": MODEL, "version": 2, "weight": 0.3, "status": "active"}
    assert entry["shadow"] == 3
    info = client.get(f"/v1/models/{MODEL}").json()
    assert info["classes"] == ["<=50K", ">50K"]
    assert info["inputs"]["age"] == "a finite number"
    assert info["canary"]["rollback_log"] == []
    assert info["batching"]["max_batch_size"] == 8
    assert "test_acc" in info["metrics"]
    spec = client.get("/openapi.json").json()
    assert "/v1/models/{name}:predict" in spec["paths"]
    assert client.get("/docs").status_code == 200


BAD: list[tuple[str, Any, int, str]] = [
    ("malformed JSON", b'{"instances": [', 400, "body"),
    ("not an object", b"[1]", 422, "body"),
    ("extra top-level key", {"instances": [], "foo": 1}, 422, "foo"),
    ("instances missing", {}, 422, "instances"),
    ("instances empty", {"instances": []}, 422, "instances"),
    ("too many instances", "too_many", 422, "instances"),
    ("oversized body", "oversized", 413, "body"),
    ("record not an object", {"instances": [[1, 2]]}, 422, "instances[0]"),
    ("missing feature", "missing", 422, "instances[0].age"),
    ("extra feature", "extra", 422, "instances[0].salary"),
    ("wrong type", "wrong_type", 422, "instances[0].age"),
    ("NaN", "nan", 422, "instances[0].hours_per_week"),
    ("infinity", "inf", 422, "instances[0].capital_gain"),
    ("finite but beyond float32 once scaled", "huge", 422, "instances[0].capital_gain"),
    ("null category", "null_category", 422, "instances[0].workclass"),
]


def bad_body(served: Served, kind: Any) -> bytes:
    if isinstance(kind, bytes):
        return kind
    if not isinstance(kind, str):
        return json.dumps(kind).encode()
    good = records(served, 1)[0]
    record: dict[str, Any] = dict(good)
    if kind == "too_many":
        return json.dumps({"instances": [good] * 501}).encode()
    if kind == "oversized":
        return b'{"instances": [' + b" " * 200_001 + b"]}"
    if kind == "missing":
        del record["age"]
    elif kind == "extra":
        record["salary"] = 1
    elif kind == "wrong_type":
        record["age"] = "forty"
    elif kind == "null_category":
        record["workclass"] = None
    elif kind == "huge":
        record["capital_gain"] = 1e300  # finite JSON; its scaled value overflows float32
    text = json.dumps({"instances": [record]})
    if kind == "nan":
        text = text.replace(f'"hours_per_week": {good["hours_per_week"]}', '"hours_per_week": NaN')
    if kind == "inf":
        text = text.replace(f'"capital_gain": {good["capital_gain"]}', '"capital_gain": Infinity')
    return text.encode()


def test_bad_input_gets_a_4xx_naming_the_field_and_the_replica_keeps_answering(
    served: Served, client: httpx.Client
) -> None:
    for what, kind, status, field in BAD:
        reply = client.post(PREDICT, content=bad_body(served, kind),
                            headers={"content-type": "application/json"})  # fmt: skip
        assert reply.status_code == status, (what, reply.text)
        error = reply.json()
        assert error["field"] == field, (what, error)
        assert error["allowed"], (what, error)
    reply = client.post("/v1/models/nope:predict", json={"instances": records(served, 1)})
    assert reply.status_code == 404
    assert "served: ['adult']" in reply.json()["error"]
    unseen = {**records(served, 1)[0], "workclass": "Astronaut"}
    assert client.post(PREDICT, json={"instances": [unseen]}).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.post(PREDICT, json={"instances": records(served, 3)}).status_code == 200


def test_wrong_methods_on_the_predict_route_say_post_over_http(
    served: Served, client: httpx.Client
) -> None:
    for method in ("GET", "PUT", "DELETE"):
        reply = client.request(method, PREDICT, json={})
        assert reply.status_code == 405 and reply.headers["allow"] == "POST", reply.text
        assert reply.json()["allowed"] == "POST"
    reply = client.post(f"/v1/models/{MODEL}:explain", json={})
    assert reply.status_code == 404 and reply.json()["field"] == "path", reply.text


def test_canary_share_follows_the_request_id_hash(served: Served, client: httpx.Client) -> None:
    batch = records(served, 2, start=100)
    ids = [f"share-{i}" for i in range(300)]

    def version(rid: str) -> Any:
        reply = client.post(PREDICT, json={"instances": batch}, headers={"x-request-id": rid})
        return reply.json()["model_version"]

    # Eight at a time (httpx's client is thread-safe): the replica batches them, as under
    # real load, and each answer is still matched to its own request id.
    with ThreadPoolExecutor(max_workers=8) as pool:
        answered = list(pool.map(version, ids))
    expected = [2 if routes_to_canary(rid, 0.3) else 1 for rid in ids]
    assert answered == expected
    share = answered.count(2) / len(ids)
    assert abs(share - 0.3) < 0.08  # 3 standard deviations of a 300-draw binomial


def test_shadow_sees_every_request_but_never_changes_the_answer(
    served: Served, client: httpx.Client
) -> None:
    before = client.get(f"/v1/models/{MODEL}").json()["shadow"]["stats"]["requests"]
    batch = records(served, 20, start=200)
    for i in range(5):
        rid = next(
            f"shadow-{i}-{j}" for j in range(100) if not routes_to_canary(f"shadow-{i}-{j}", 0.3)
        )
        body = client.post(PREDICT, json={"instances": batch}, headers={"x-request-id": rid}).json()
        assert body["model_version"] == 1
        classes = served.registry.versions["primary"].classes
        got = np.array([[p["probabilities"][c] for c in classes] for p in body["predictions"]])
        np.testing.assert_allclose(got, in_process(served, "primary", batch), rtol=1e-5, atol=1e-7)
    shadow = client.get(f"/v1/models/{MODEL}").json()["shadow"]
    assert shadow["version"] == 3
    assert shadow["stats"]["requests"] - before == 5
    # Version 3 is version 1 with its output negated: it disagrees on every record.
    assert shadow["stats"]["disagreement"] > 0.95


def test_a_failing_canary_rolls_back_and_clients_never_see_it(
    served: Served, client: httpx.Client
) -> None:
    auth = {"authorization": f"Bearer {served.token}"}
    batch = records(served, 4)
    markers = Path(served.registry.root, MODEL, ".serve")
    before = set(markers.glob("*/canary-v4.json"))
    for i in range(8):
        reply = client.post(f"/guarded{PREDICT}", json={"instances": batch},
                            headers={**auth, "x-request-id": f"bad-{i}"})  # fmt: skip
        assert reply.status_code == 200, reply.text
        assert reply.json()["model_version"] == 1
    canary = client.get(f"/guarded/v1/models/{MODEL}", headers=auth).json()["canary"]
    assert (canary["status"], canary["weight"]) == ("rolled_back", 0.0)
    (entry,) = canary["rollback_log"]
    assert entry["version"] == 4
    assert entry["reasons"] == ["error rate 1.000 > 0.05"]
    assert canary["stats"]["requests"] == 5  # no canary traffic after the rollback
    # The replica wrote its rollback marker (a restarted replica of this app reads it).
    deadline = time.monotonic() + 30.0
    while not set(markers.glob("*/canary-v4.json")) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    (written,) = set(markers.glob("*/canary-v4.json")) - before
    assert json.loads(written.read_text())["reasons"] == ["error rate 1.000 > 0.05"]


def test_bearer_token_guards_every_route_but_health(served: Served, client: httpx.Client) -> None:
    assert client.get("/guarded/healthz").status_code == 200
    for path in ("/v1/models", f"/v1/models/{MODEL}", "/docs", "/openapi.json"):
        reply = client.get(f"/guarded{path}")
        assert reply.status_code == 401, path
        assert "Authorization: Bearer" in reply.json()["error"]
    reply = client.post(f"/guarded{PREDICT}", json={"instances": records(served, 1)},
                        headers={"authorization": "Bearer wrong"})  # fmt: skip
    assert reply.status_code == 401
    assert reply.json()["error"] == "the bearer token does not match this server's"
    ok = client.get("/guarded/v1/models", headers={"authorization": f"Bearer {served.token}"})
    assert ok.status_code == 200


def shifted(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Older, overworked, richer, all in one occupation: a population the model never saw."""
    return [
        {**r, "age": r["age"] + 25, "hours_per_week": min(99, r["hours_per_week"] * 2),
         "capital_gain": r["capital_gain"] + 20_000, "occupation": "Exec-managerial"}
        for r in batch
    ]  # fmt: skip


def test_drift_stays_quiet_on_held_out_records_and_fires_on_shifted_ones(
    served: Served, client: httpx.Client
) -> None:
    held_out = records(served, 400, start=1000)
    for start in (0, 200):
        client.post(PREDICT, json={"instances": held_out[start : start + 200]})
    quiet = client.get(f"/v1/models/{MODEL}/drift").json()
    assert quiet["window"] == 400 and quiet["ready"]
    assert not quiet["drifting"], quiet
    assert quiet["drift_index"] < quiet["index_limit"]
    for start in (0, 200):
        client.post(PREDICT, json={"instances": shifted(held_out[start : start + 200])})
    loud = client.get(f"/v1/models/{MODEL}/drift").json()
    assert loud["drifting"]
    for name in ("age", "hours_per_week", "capital_gain", "occupation"):
        assert loud["features"][name]["status"] == "shifted", name
    assert loud["features"]["age"]["ks_shifted"]
    assert loud["features"]["race"]["status"] == "stable"


def hand_ece(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (confidence >= lo) & (confidence < hi)
        if inside.any():
            gap = (predicted[inside] == y[inside]).mean() - confidence[inside].mean()
            total += inside.sum() / len(y) * abs(gap)
    return total


def test_feedback_metrics_match_a_hand_computation(served: Served, client: httpx.Client) -> None:
    classes = served.registry.versions["primary"].classes
    all_probs, all_labels, all_sex = [], [], []
    for rid, start, n in (("fb-1", 3000, 50), ("fb-2", 3100, 30)):
        batch = records(served, n, start=start)
        body = client.post(PREDICT, json={"instances": batch},
                           headers={"x-request-id": rid}).json()  # fmt: skip
        truth = labels(served, n, start=start)
        reply = client.post(
            f"/v1/models/{MODEL}/feedback", json={"request_id": rid, "labels": truth}
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["labelled"] == n
        all_probs += [[p["probabilities"][c] for c in classes] for p in body["predictions"]]
        all_labels += [classes.index(t) for t in truth]
        all_sex += [r["sex"] for r in batch]
    probs, y, sex = np.array(all_probs), np.array(all_labels), np.array(all_sex)
    summary = client.get(f"/v1/models/{MODEL}/feedback").json()
    correct = probs.argmax(axis=1) == y
    assert summary["n"] == 80
    assert summary["accuracy"] == pytest.approx(correct.mean())
    assert summary["ece"] == pytest.approx(hand_ece(probs, y), abs=1e-9)
    acc = {g: correct[sex == g].mean() for g in ("Female", "Male")}
    rate = {g: (probs.argmax(axis=1)[sex == g] == 1).mean() for g in ("Female", "Male")}
    assert summary["groups"]["Female"]["accuracy"] == pytest.approx(acc["Female"])
    assert summary["accuracy_gap"] == pytest.approx(abs(acc["Female"] - acc["Male"]))
    assert summary["dp_gap"] == pytest.approx(abs(rate["Female"] - rate["Male"]))


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        (b"{nope", 400, "body"),
        ({"request_id": "never-sent", "labels": ["<=50K"]}, 404, "request_id"),
        ({"request_id": "fb-bad-409", "labels": ["<=50K"]}, 409, "request_id"),
        ({"request_id": "fb-bad-422"}, 422, "labels"),
        ({"request_id": "fb-bad-422x", "labels": ["<=50K"], "x": 1}, 422, "x"),
    ],
)
def test_bad_feedback_is_refused(
    served: Served, client: httpx.Client, payload: Any, status: int, field: str
) -> None:
    # Each case makes the request its feedback names (its tests may run on another
    # pytest worker's Serve than the feedback test's), and the 409 case labels it once.
    rid = payload.get("request_id", "never-sent") if isinstance(payload, dict) else "never-sent"
    if rid.startswith("fb-bad"):
        sent = client.post(PREDICT, json={"instances": records(served, 1, start=3200)},
                           headers={"x-request-id": rid})  # fmt: skip
        assert sent.status_code == 200, sent.text
    if status == 409:
        first = client.post(
            f"/v1/models/{MODEL}/feedback", json={"request_id": rid, "labels": ["<=50K"]}
        )
        assert first.status_code == 200, first.text
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    reply = client.post(f"/v1/models/{MODEL}/feedback", content=content)
    assert reply.status_code == status, reply.text
    assert reply.json()["field"] == field


def _scrape_until(url: str, wanted: list[str], timeout_s: float) -> tuple[str, float]:
    """Poll a Prometheus endpoint until every ``wanted`` line prefix shows; return text, wait."""
    started = time.monotonic()
    text = ""
    while time.monotonic() - started < timeout_s:
        try:
            text = httpx.get(url, timeout=10.0).text
        except httpx.HTTPError:
            text = ""
        lines = text.splitlines()
        if all(any(line.startswith(w) for line in lines) for w in wanted):
            break
        time.sleep(0.5)
    return text, time.monotonic() - started


def test_serve_metrics_reach_prometheus_format(served: Served, client: httpx.Client) -> None:
    import ray

    batch = records(served, 5, start=300)
    assert client.post(PREDICT, json={"instances": batch}).status_code == 200
    assert (
        client.post(PREDICT, content=b"{", headers={"content-type": "application/json"}).status_code
        == 400
    )
    (node,) = [n for n in ray.nodes() if n["Alive"]]
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    wanted = [
        "ray_regtune_serve_latency_ms_bucket{",
        "ray_regtune_serve_predictions_total{",
        "ray_regtune_serve_rejected_total{",
        "ray_regtune_serve_canary_weight{",
    ]
    # Replicas export every metrics_report_interval_ms (10 s by default); measured: ~7 s here.
    text, _ = _scrape_until(url, wanted, timeout_s=60.0)
    lines = text.splitlines()
    for prefix in wanted:
        assert any(line.startswith(prefix) for line in lines), (prefix, text[-2000:])
    assert "# TYPE ray_regtune_serve_latency_ms histogram" in lines
    predicted = [
        line
        for line in lines
        if line.startswith("ray_regtune_serve_predictions_total{") and f'model="{MODEL}"' in line
    ]
    assert predicted and all(float(line.rsplit(" ", 1)[1]) >= 1 for line in predicted)
    assert any('status="400"' in line for line in lines if "rejected_total{" in line)


def test_replica_urls_list_only_replicas(served: Served, client: httpx.Client) -> None:
    """Without direct ingress Serve's target groups hold its proxy, which is no replica."""
    from ray.serve.context import _get_global_client

    from regtune.serve.app import replica_urls

    serve_client = _get_global_client()
    assert serve_client is not None
    details = serve_client.get_serve_details()
    assert any(group["targets"] for group in details["target_groups"])  # the proxy's
    assert replica_urls("main", timeout_s=0.0) == []
