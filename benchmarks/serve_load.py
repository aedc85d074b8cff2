"""Serving under bounded load: Ray Serve vs a plain FastAPI + uvicorn process, same model.

Every contender serves the same registered version with the same HTTP app
(:func:`regtune.serve.http.create_api`: validation, drift window, feedback
bookkeeping, metrics), on 127.0.0.1, each in its own fresh process; only the
host differs:

* ``fastapi``: the app under plain uvicorn, forward called directly;
* ``serve``: Ray Serve, defaults (no batching: ``max_batch_size=1``);
* ``serve-batch``: Ray Serve with ``@serve.batch`` (size and wait below);
* ``serve-throughput``: batching plus ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``;
* ``serve-composed``: the ensemble as composed deployments: one deployment
  per member (its network only) called through ``DeploymentHandle``s by an
  ingress deployment that batches like ``serve-batch``, fans each batch out
  to every member concurrently and averages their probabilities (the
  shipped app keeps all members in one replica; this is the alternative the
  issue asks to measure, kept here only while it loses);
* ``student-batch``: ``serve-batch`` serving a student distilled from the
  ensemble (``regtune distill``'s code path; registered as the next version
  of the same model name, so the URL is the same).

The load generator is an ``httpx`` async client in this process, one record
per request, ``concurrency`` requests in flight (1 and 32), after a warm-up;
it reports requests/s, p50 and p99 latency as the client saw them. The floor
is the in-process cost of the same work without HTTP: validate + encode +
forward + format per request, and the forward of a 32-row batch.

Caveats: the machine has 2 cores shared with the load generator (and, when
this was run, with other engineers' jobs), so absolute numbers are
pessimistic and noisy; contenders run one after the other.

    python -m benchmarks.serve_load [--smoke-test] [--members 3] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import markdown_table, write_results

#: Model served: digits MLPs (the issue's reference numbers are for a digits MLP).
MODEL_NAME = "bench-digits"
MEMBER_CONFIG: dict[str, Any] = {
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 256, "depth": 2},
    "training": {"epochs": 3, "batch_size": 128, "robust_every": 0},
}
CONCURRENCY = (1, 32)
BATCH = {"max_batch_size": 32, "batch_wait_ms": 1.0}
#: Contender -> (settings overrides, extra environment of the server process).
CONTENDERS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "fastapi": ({"max_batch_size": 1}, {}),
    "serve": ({"max_batch_size": 1}, {}),
    "serve-batch": (BATCH, {}),
    "serve-throughput": (BATCH, {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}),
    # torch's default thread count instead of one thread per replica (not in the default run).
    "serve-batch-torch-threads": ({**BATCH, "torch_threads": None}, {}),
    "serve-composed": (BATCH, {}),
    "student-batch": (BATCH, {}),
}
DEFAULT_CONTENDERS = (
    "fastapi",
    "serve",
    "serve-batch",
    "serve-throughput",
    "serve-composed",
    "student-batch",
)
#: --smoke-test contenders: the plain process and the composed app (the Serve path
#: with the most moving parts; the shipped one is covered by tests/serve).
SMOKE_CONTENDERS = ("fastapi", "serve-composed")
#: The student distilled for ``student-batch`` (DistillSettings' default size).
STUDENT_MODEL = {"arch": "mlp", "width": 32, "depth": 1}
STUDENT_EPOCHS = 20
READY = "READY"
STARTUP_TIMEOUT_S = 300.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the registered model ------------------------------------------------------------------


def register(root: str, members: int, epochs: int) -> str:
    """Train ``members`` digits MLPs and register them as one version; return its ref."""
    from regtune.platform.registry import Member, save_version
    from regtune.trainables.data import load_dataset
    from regtune.trainables.loop import train

    dataset = load_dataset("digits")
    trained = []
    for seed in range(members):
        config = {**MEMBER_CONFIG, "training": {**MEMBER_CONFIG["training"], "epochs": epochs,
                                                "seed": seed}}  # fmt: skip
        result = train(config, dataset=dataset, device="cpu")
        trained.append(Member.from_model(config, result.model))
    version = save_version(MODEL_NAME, trained, dataset, root=root)
    return f"{MODEL_NAME}:{version.version}"


def register_student(root: str, teacher: str, epochs: int) -> str:
    """Distill ``teacher`` into a student (a Ray task, then Ray is shut down); return its ref."""
    import ray

    from regtune.platform.registry.distill import DistillSettings, distill

    student = distill(teacher, DistillSettings(student=STUDENT_MODEL, epochs=epochs), root=root)
    ray.shutdown()
    return student.ref


def sample_records(n: int) -> list[dict[str, Any]]:
    """Raw digits test records (64 pixel values each), as a client has them."""
    from regtune.trainables.data import load_dataset

    dataset = load_dataset("digits")
    names = dataset.schema.input_names()
    rows = dataset.raw_test[names].head(n)
    return json.loads(rows.to_json(orient="records"))


# -- the floor --------------------------------------------------------------------------------


def floor(root: str, ref: str, records: list[dict[str, Any]], repeats: int) -> dict[str, float]:
    """In-process cost (us): one request's work without HTTP, and one 32-row forward."""
    from regtune.serve.predictor import set_torch_threads
    from regtune.serve.service import load_service
    from regtune.serve.settings import ServeSettings

    set_torch_threads(1)
    service = load_service(ServeSettings(model=ref, registry=root))
    body = json.dumps({"instances": records[:1]}).encode()

    async def one() -> None:
        await service.predict(MODEL_NAME, body, "floor")

    loop = asyncio.new_event_loop()
    for _ in range(20):
        loop.run_until_complete(one())
    started = time.perf_counter()
    for _ in range(repeats):
        loop.run_until_complete(one())
    per_request = (time.perf_counter() - started) / repeats * 1e6
    loop.close()
    x = service.primary.encode(records[:1])
    started = time.perf_counter()
    for _ in range(repeats):
        service.primary.probabilities(x)
    forward_1 = (time.perf_counter() - started) / repeats * 1e6
    x32 = service.primary.encode((records * 32)[:32])
    started = time.perf_counter()
    for _ in range(repeats):
        service.primary.probabilities(x32)
    forward_32 = (time.perf_counter() - started) / repeats * 1e6
    return {
        "request_us": per_request,
        "forward_1_us": forward_1,
        "forward_32_us": forward_32,
        "forward_32_per_row_us": forward_32 / 32,
    }


# -- the composed ensemble (benchmark only) -----------------------------------------------------


def composed_app(settings: dict[str, Any]) -> Any:
    """The ensemble as composed deployments: members behind handles, an ingress averaging.

    Same HTTP app and service as the shipped one; only the forward differs.
    """
    import asyncio as aio

    import numpy as np
    import torch
    from fastapi import FastAPI
    from ray import serve

    from regtune.platform.registry import EnsembleModule, load_version, registry_root
    from regtune.serve.http import create_api
    from regtune.serve.metrics import RayMetrics
    from regtune.serve.predictor import set_torch_threads
    from regtune.serve.service import load_service
    from regtune.serve.settings import parse_settings

    parsed = parse_settings(settings)
    root = parsed.registry or registry_root(parsed.storage)
    n_members = len(load_version(parsed.model, root=root).meta["architecture"]["members"])

    @serve.deployment
    class MemberNet:
        """One member network: encoded rows -> its class probabilities."""

        def __init__(self, index: int) -> None:
            set_torch_threads(parsed.torch_threads)
            module = load_version(parsed.model, root=root).module
            net = module.members[index] if isinstance(module, EnsembleModule) else module
            self.net = net.eval()

        async def probabilities(self, x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                out = torch.softmax(self.net(torch.from_numpy(x)), dim=1)
            return np.asarray(out.double().numpy())

    @serve.deployment
    @serve.ingress()
    class ComposedIngress:
        """Validation, batching and bookkeeping as in the shipped app; members called remotely."""

        def __init__(self, *members: Any) -> None:
            set_torch_threads(parsed.torch_threads)
            self.members = members
            self.service = load_service(parsed, forward=self._batched, metrics=RayMetrics())
            batcher: Any = self._batched
            batcher.set_max_batch_size(parsed.max_batch_size)
            batcher.set_batch_wait_timeout_s(parsed.batch_wait_ms / 1000.0)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
        async def _batched(self, xs: list[torch.Tensor]) -> list[np.ndarray]:
            self.service.batches += 1
            self.service.batched_requests += len(xs)
            x = torch.cat(xs).numpy()
            parts = await aio.gather(*(m.probabilities.remote(x) for m in self.members))
            probs = np.mean(np.stack(parts), axis=0)
            return list(np.split(probs, np.cumsum([len(part) for part in xs])[:-1]))

        def __serve_build_asgi_app__(self) -> FastAPI:
            return create_api(self.service)

    options = {"ray_actor_options": {"num_cpus": parsed.num_cpus}}
    members = [
        MemberNet.options(name=f"Member{i}", **options).bind(i)  # type: ignore[attr-defined]
        for i in range(n_members)
    ]
    return ComposedIngress.options(  # type: ignore[attr-defined]
        max_ongoing_requests=parsed.max_ongoing_requests, **options
    ).bind(*members)


# -- servers (each in its own process) --------------------------------------------------------


def run_server(kind: str, settings: dict[str, Any], port: int) -> None:
    """Serve until SIGTERM/SIGINT; print READY once requests are answered."""
    from regtune.serve.settings import parse_settings

    parsed = parse_settings(settings)
    stop = {"flag": False}

    def _stop(*_: Any) -> None:
        stop["flag"] = True

    if kind == "fastapi":
        import uvicorn

        from regtune.serve.http import create_api
        from regtune.serve.predictor import set_torch_threads
        from regtune.serve.service import load_service

        set_torch_threads(parsed.torch_threads)
        api = create_api(load_service(parsed))
        config = uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning",
                                access_log=False)  # fmt: skip
        server = uvicorn.Server(config)
        print(READY, flush=True)
        server.run()
        return
    from ray import serve

    from regtune.platform.tune.runtime import ensure_ray
    from regtune.serve.app import build_app, start_http

    ensure_ray(None)
    start_http("127.0.0.1", port)
    app = composed_app(settings) if kind == "serve-composed" else build_app(parsed)
    serve.run(app, name="bench", route_prefix="/")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(READY, flush=True)
    while not stop["flag"]:
        time.sleep(0.2)
    serve.shutdown()


def start_server(
    kind: str, settings: dict[str, Any], env: dict[str, str]
) -> tuple[subprocess.Popen[str], int]:
    """Start a contender's server process and wait until it says READY."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.serve_load", "--server", kind,
         "--settings", json.dumps(settings), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"server {kind} exited with {proc.returncode} before READY")
        if line.strip() == READY:
            return proc, port
    proc.kill()
    raise RuntimeError(f"server {kind} not ready after {STARTUP_TIMEOUT_S} s")


def stop_server(proc: subprocess.Popen[str]) -> None:
    """SIGINT, then SIGKILL if it does not stop within 60 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- load -------------------------------------------------------------------------------------


async def _load(url: str, bodies: list[bytes], concurrency: int, warmup: int) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        # Wait until the endpoint answers (a Serve proxy may still be routing).
        for _ in range(600):
            try:
                if (await client.post(url, content=bodies[0], headers=headers)).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        latencies: list[float] = []
        errors = 0
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def worker(record: bool) -> None:
            nonlocal errors
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                reply = await client.post(url, content=body, headers=headers)
                if record:
                    latencies.append((time.perf_counter() - started) * 1e3)
                    errors += reply.status_code != 200

        for body in bodies[:warmup]:
            queue.put_nowait(body)
        await asyncio.gather(*(worker(False) for _ in range(concurrency)))
        for body in bodies:
            queue.put_nowait(body)
        started = time.perf_counter()
        await asyncio.gather(*(worker(True) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / wall,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "mean_ms": statistics.fmean(latencies),
    }


def measure(kind: str, settings: dict[str, Any], env: dict[str, str], records: list[dict[str, Any]],
            n_requests: int) -> dict[str, Any]:  # fmt: skip
    """Start one contender, load it at each concurrency, stop it."""
    bodies = [json.dumps({"instances": [records[i % len(records)]]}).encode()
              for i in range(n_requests)]  # fmt: skip
    started = time.perf_counter()
    proc, port = start_server(kind, settings, env)
    startup = time.perf_counter() - started
    url = f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict"
    try:
        results: dict[str, Any] = {"startup_s": startup}
        for concurrency in CONCURRENCY:
            n = n_requests if concurrency > 1 else max(50, n_requests // 4)
            warmup = max(20, n // 10)
            results[f"c{concurrency}"] = asyncio.run(_load(url, bodies[:n], concurrency, warmup))
        if kind != "fastapi":
            import httpx

            info = httpx.get(f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}", timeout=30).json()
            results["batching"] = info["batching"]
        return results
    finally:
        stop_server(proc)


def _ratio(a: dict[str, Any], b: dict[str, Any], level: str, key: str) -> float | None:
    try:
        return float(a[level][key]) / float(b[level][key])
    except (KeyError, ZeroDivisionError):
        return None


def compare(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The two questions answered side by side: composed vs one deployment, student vs ensemble."""
    out: dict[str, dict[str, Any]] = {}
    pairs = {
        "composed_vs_one_deployment": ("serve-composed", "serve-batch"),
        "student_vs_ensemble": ("student-batch", "serve-batch"),
    }
    for key, (a, b) in pairs.items():
        if a not in results or b not in results:
            continue
        rps = _ratio(results[a], results[b], "c32", "rps")
        p50 = _ratio(results[a], results[b], "c1", "p50_ms")
        entry: dict[str, Any] = {"c32_rps_ratio": rps, "c1_p50_ratio": p50}
        if key == "composed_vs_one_deployment":
            faster = "serve-composed" if (rps or 0) > 1 and (p50 or 2) < 1 else "serve-batch"
            entry["faster"] = faster
            entry["text"] = (
                f"Composed deployments vs all members in one replica: {rps:.2f}x the c32 "
                f"throughput, {p50:.2f}x the c1 p50; faster: {faster}."
            )
        else:
            entry["text"] = (
                f"Student endpoint vs ensemble endpoint: {rps:.2f}x the c32 throughput, "
                f"{p50:.2f}x the c1 p50."
            )
        out[key] = entry
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke-test", action="store_true")
    parser.add_argument("--members", type=int, default=3, help="Ensemble members served.")
    parser.add_argument("--requests", type=int, default=2000, help="Requests at concurrency 32.")
    parser.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                        help=f"Comma-separated, from: {', '.join(CONTENDERS)}.")  # fmt: skip
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.server:
        run_server(args.server, json.loads(args.settings), args.port)
        return 0
    smoke = args.smoke_test
    members = 1 if smoke else args.members
    n_requests = 80 if smoke else args.requests
    kinds = list(SMOKE_CONTENDERS) if smoke else args.contenders.split(",")
    unknown = sorted(set(kinds) - set(CONTENDERS))
    if unknown:
        parser.error(f"--contenders: unknown {unknown}; allowed: {', '.join(CONTENDERS)}")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as root:
        ref = register(root, members, epochs=1 if smoke else 3)
        records = sample_records(200)
        floor_us = floor(root, ref, records, repeats=50 if smoke else 2000)
        student = None
        if "student-batch" in kinds:
            student = register_student(root, ref, epochs=2 if smoke else STUDENT_EPOCHS)
            floor_us["student"] = floor(root, student, records, repeats=50 if smoke else 2000)
        results: dict[str, Any] = {}
        for kind in kinds:
            overrides, env = CONTENDERS[kind]
            served = student if kind == "student-batch" and student else ref
            settings = {"model": served, "registry": root, "num_cpus": 0, **overrides}
            results[kind] = measure(kind, settings, env, records, n_requests)
            print(kind, json.dumps(results[kind]), flush=True)
    rows = []
    base = results.get("fastapi", {}).get("c32", {}).get("rps")
    for kind, r in results.items():
        rows.append([
            kind, r["c1"]["rps"], r["c1"]["p50_ms"], r["c1"]["p99_ms"], r["c32"]["rps"],
            r["c32"]["p50_ms"], r["c32"]["p99_ms"],
            (r["c32"]["rps"] / base) if base else float("nan"),
            (r.get("batching") or {}).get("mean_batch_requests") or "-",
        ])  # fmt: skip
    headers = ["endpoint", "c1 req/s", "c1 p50 ms", "c1 p99 ms", "c32 req/s", "c32 p50 ms",
               "c32 p99 ms", "c32 vs fastapi", "mean batch"]  # fmt: skip
    table = markdown_table(headers, rows)
    table += (
        f"\n\nModel: {members}-member digits MLP ensemble (width 256, depth 2), one record per "
        f"request. In-process floor: {floor_us['request_us']:.0f} us per request (validate, "
        f"encode, forward, format), forward {floor_us['forward_1_us']:.0f} us for 1 row and "
        f"{floor_us['forward_32_us']:.0f} us for 32 rows. 2 shared cores, load generator on the "
        "same machine; measured while other engineers' jobs ran (numbers are pessimistic). "
        "Under such contention a multi-process Serve gets a larger share of the CPUs than one "
        "uvicorn process, which flatters Serve in the c32 ratio."
    )
    comparisons = compare(results)
    for line in comparisons.values():
        table += f"\n\n{line['text']}"
    if "student" in floor_us:
        table += (
            f"\n\nStudent (MLP width {STUDENT_MODEL['width']}, depth {STUDENT_MODEL['depth']}) "
            f"in-process floor: {floor_us['student']['request_us']:.0f} us per request, forward "
            f"{floor_us['student']['forward_32_us']:.0f} us for 32 rows."
        )
    path = write_results(
        "serve_load",
        {"members": members, "requests_c32": n_requests, "floor_us": floor_us,
         "comparisons": comparisons,
         "load_average_1m": {"start": load_start, "end": os.getloadavg()[0]},
         "contenders": results, "settings": {k: v[0] for k, v in CONTENDERS.items()},
         "env": {k: v[1] for k, v in CONTENDERS.items()}},
        table,
        smoke=smoke,
    )  # fmt: skip
    print(table)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
