"""A canary that is another model's version (``--canary other:1``), over real HTTP on
127.0.0.1: answers, feedback, the description and Prometheus name it as itself,
never as the primary."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from regtune.serve.rollout import routes_to_canary
from tests.serve.conftest import MODEL, Registry, free_port

OTHER = "other"
PREDICT = f"/v1/models/{MODEL}:predict"
WEIGHT = 0.5


@pytest.fixture(scope="module")
def base(
    ray_local: None, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Serve ``adult:1`` with canary ``other:1`` (another model, trained here) at 0.5."""
    from ray import serve

    from regtune.platform.registry import Member, save_version
    from regtune.serve.app import build_app, start_http
    from regtune.trainables.loop import train

    root = tmp_path_factory.mktemp("other-registry") / "registry"
    shutil.copytree(registry.root, root)
    config = {
        "dataset": "adult",
        "model": {"arch": "mlp", "width": 8, "depth": 1},
        "training": {"epochs": 1, "batch_size": 256, "seed": 7, "robust_every": 0},
    }
    result = train(config, dataset=registry.dataset, device="cpu")
    save_version(OTHER, [Member.from_model(config, result.model)], registry.dataset, root=str(root))
    port = free_port()
    start_http("127.0.0.1", port)
    app = build_app({"registry": str(root), "num_cpus": 0, "model": f"{MODEL}:1",
                     "canary": f"{OTHER}:1", "canary_weight": WEIGHT, "shadow": "2",
                     "max_p99_ms": 60_000.0, "max_disagreement": 1.0})  # fmt: skip
    serve.run(app, name="other", route_prefix="/")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def _records(registry: Registry, n: int) -> list[dict[str, Any]]:
    raw = registry.dataset.raw_test
    rows = raw.iloc[:n][registry.dataset.schema.input_names()]
    return list(json.loads(rows.to_json(orient="records")))


def _ids(n: int, *, canary: bool) -> list[str]:
    return [f"o-{i}" for i in range(1000) if routes_to_canary(f"o-{i}", WEIGHT) == canary][:n]


def test_a_canary_of_another_model_is_named_as_itself(base: str, registry: Registry) -> None:
    import ray

    batch = _records(registry, 3)
    to_canary, to_primary = _ids(6, canary=True), _ids(4, canary=False)
    with httpx.Client(base_url=base, timeout=60.0) as client:
        named = {}
        for rid in to_canary + to_primary:
            reply = client.post(PREDICT, json={"instances": batch}, headers={"x-request-id": rid})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            named[rid] = (body["model_name"], body["model_version"])
        assert {named[r] for r in to_canary} == {(OTHER, 1)}
        assert {named[r] for r in to_primary} == {(MODEL, 1)}
        labels = [str(v) for v in registry.dataset.raw_test.iloc[:3][registry.dataset.schema.label]]
        for rid in to_canary + to_primary:
            reply = client.post(
                f"/v1/models/{MODEL}/feedback", json={"request_id": rid, "labels": labels}
            )
            assert reply.status_code == 200, reply.text
        versions = client.get(f"/v1/models/{MODEL}/feedback").json()["versions"]
        assert list(versions) == ["1", f"{OTHER}:1"]
        assert (versions["1"]["n"], versions[f"{OTHER}:1"]["n"]) == (12, 18)
        (entry,) = client.get("/v1/models").json()["models"]
        assert entry["canary"] == {"name": OTHER, "version": 1, "weight": WEIGHT,
                                   "status": "active"}  # fmt: skip
        assert entry["shadow"] == 2
        info = client.get(f"/v1/models/{MODEL}").json()
        assert (info["canary"]["name"], info["canary"]["stats"]["requests"]) == (OTHER, 6)
        assert (info["shadow"]["name"], info["shadow"]["version"]) == (MODEL, 2)

    (node,) = [n for n in ray.nodes() if n["Alive"]]
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    # Replicas export every metrics_report_interval_ms (10 s by default).
    counts = _latency_counts(url, wait_for=f"{OTHER}:1")
    # Other test modules' servers of this Ray may have added to version "1".
    assert counts[f"{OTHER}:1"] == 6 and counts["1"] >= 4, counts


def _latency_counts(url: str, wait_for: str, timeout_s: float = 60.0) -> dict[str, float]:
    """The served model's latency counts per version tag (summed over series), once
    a series of version ``wait_for`` has been exported."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        counts: dict[str, float] = {}
        for line in httpx.get(url, timeout=10.0).text.splitlines():
            if not line.startswith("ray_regtune_serve_latency_ms_count{"):
                continue
            tags = dict(
                t.split("=", 1) for t in line[line.index("{") + 1 : line.rindex("}")].split(",")
            )
            if tags.get("model", "").strip('"') != MODEL:
                continue
            version = tags["version"].strip('"')
            counts[version] = counts.get(version, 0.0) + float(line.rsplit(" ", 1)[1])
        if wait_for in counts or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)
