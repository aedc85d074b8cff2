"""Serving under bounded load: Ray Serve vs a plain FastAPI + uvicorn process, same model.

Every contender serves the same registered version with the same HTTP app
(:func:`regtune.serve.http.create_api` over :class:`regtune.serve.service.ModelService`:
validation, encoding, drift window, feedback bookkeeping, metrics, JSON), on
127.0.0.1, each server in its own fresh process; only the host differs:

* ``fastapi``: the app under plain uvicorn, forward called directly;
* ``serve-proxy``: Ray Serve as shipped (``@serve.batch`` with the shipped
  size and wait), requests through Serve's HTTP proxy (the default ingress);
* ``serve-direct``: the same deployment as ``regtune serve`` runs it:
  Serve's throughput-optimized mode (``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``,
  which includes direct ingress: the replica runs its own HTTP server on
  127.0.0.1, and the app on its main event loop), requests sent to the
  replica's port;
* levers, not in the default run (``--contenders``): ``serve-proxy-wait-2ms``
  and ``serve-direct-wait-2ms`` (the previous shipped batching: size 16, wait
  2 ms), ``serve-direct-nobatch`` (``max_batch_size=1``),
  ``serve-direct-access-log`` (Serve's per-request access log on),
  ``serve-direct-own-thread`` (``RAY_SERVE_ENABLE_DIRECT_INGRESS=1`` alone:
  the app on its own thread, Serve's default), ``serve-proxy-2replicas``
  (two replicas behind the proxy, which balances them),
  ``serve-direct-torch-threads`` (torch's default thread count),
  ``serve-composed`` (one deployment per ensemble member behind
  ``DeploymentHandle``s, via the proxy; the shipped app keeps all members in
  one replica) and ``student-direct`` (a student distilled from the ensemble,
  ``regtune distill``'s code path, served like ``serve-direct``). HAProxy
  ingress (``RAY_SERVE_ENABLE_HA_PROXY``) is not a contender: Ray 2.60's
  HAProxy config binds its stats and Prometheus frontends on all interfaces.

All servers start first; then ``--reps`` rounds load each contender in turn
(the order rotates every round) at concurrency 1 and 32, so every contender
sees the machine's load at the same times; the tables report medians over
rounds. The load generator is a minimal asyncio HTTP/1.1 keep-alive client in
this process (one record per request, ``concurrency`` connections each with
one request in flight), cheap enough to leave the 2 cores to the servers; it
reports requests/s, p50 and p99 latency as the client saw them. Before the
load, every contender's answer to the same records is checked against
``fastapi``'s (same probabilities). The floor is the in-process cost of the
same work without HTTP: validate + encode + forward + format per request, and
the forward of a 32-row batch.

``--smoke-test`` (run by ``make test``: it must still run end to end): a
one-member model, ``fastapi`` and ``serve-direct`` started together, one
round of 64 requests; its numbers mean nothing.

Caveats: 2 cores shared by the servers and the load generator (and, when this
was run, other engineers' jobs), so absolute numbers are pessimistic and noisy.

    python -m benchmarks.serve_load [--smoke-test] [--members 3] [--requests 800] [--reps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from dataclasses import dataclass, field
from pathlib import Path
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
#: Batching as shipped (ServeSettings' defaults): no wait, so a lone request is
#: never held; under load a batch is whatever queued during the previous forward.
SHIPPED: dict[str, Any] = {}
#: What ``regtune serve`` sets for a local Ray (regtune.serve.app.request_direct_ingress).
FAST = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
}
#: Direct ingress alone (the app on its own thread, as Serve does by default).
DIRECT = {
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
}


@dataclass(frozen=True)
class Contender:
    """One way of serving: the host process, settings overrides, environment, ingress path.

    ``path`` is where the client sends requests: ``"proxy"`` (the HTTP port the
    server was started with: uvicorn's, or Serve's proxy or HAProxy) or
    ``"direct"`` (the replica's own port, Serve's direct ingress).
    """

    host: str
    settings: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    path: str = "proxy"
    student: bool = False


CONTENDERS: dict[str, Contender] = {
    "fastapi": Contender("fastapi"),
    "serve-proxy": Contender("serve", SHIPPED),
    "serve-direct": Contender("serve", SHIPPED, FAST, "direct"),
    "serve-proxy-wait-2ms": Contender("serve", {"max_batch_size": 16, "batch_wait_ms": 2.0}),
    "serve-direct-wait-2ms": Contender(
        "serve", {"max_batch_size": 16, "batch_wait_ms": 2.0}, FAST, "direct"
    ),
    "serve-direct-nobatch": Contender("serve", {"max_batch_size": 1}, FAST, "direct"),
    "serve-direct-access-log": Contender("serve", {"access_log": True}, FAST, "direct"),
    "serve-direct-own-thread": Contender("serve", SHIPPED, DIRECT, "direct"),
    "serve-proxy-2replicas": Contender("serve", {"num_replicas": 2}),
    "serve-direct-torch-threads": Contender("serve", {"torch_threads": None}, FAST, "direct"),
    "serve-composed": Contender("composed", SHIPPED),
    "student-direct": Contender("serve", SHIPPED, FAST, "direct", student=True),
}
DEFAULT_CONTENDERS = ("fastapi", "serve-proxy", "serve-direct")
#: --smoke-test: the plain process and the shipped Serve path.
SMOKE_CONTENDERS = ("fastapi", "serve-direct")
#: The student distilled for ``student-direct`` (DistillSettings' default size).
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

        @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
        async def _batched(self, batch: list[Any]) -> list[np.ndarray]:
            # The benchmark's digits model has no sensitive attribute: its groups are None.
            xs = [x for x, _ in batch]
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
    """Serve until SIGTERM/SIGINT; print ``READY {urls}`` once Serve says the app is up."""
    from regtune.serve.settings import parse_settings

    parsed = parse_settings(settings)
    stop = {"flag": False}

    def _stop(*_: Any) -> None:
        stop["flag"] = True

    base = f"http://127.0.0.1:{port}"
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
        print(READY, json.dumps({"proxy": base, "direct": None}), flush=True)
        server.run()
        return
    from ray import serve

    from regtune.platform.tune.runtime import ensure_ray
    from regtune.serve.app import build_app, replica_urls, start_http

    ensure_ray(None)
    start_http("127.0.0.1", port)
    app = composed_app(settings) if kind == "composed" else build_app(parsed)
    serve.run(app, name="bench", route_prefix="/")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    urls = replica_urls("bench")  # what `regtune serve` prints as the fast path
    direct = urls[0] if urls else None
    print(READY, json.dumps({"proxy": base, "direct": direct}), flush=True)
    while not stop["flag"]:
        time.sleep(0.2)
    serve.shutdown()


def launch_server(
    kind: str, settings: dict[str, Any], env: dict[str, str], *, log: str
) -> subprocess.Popen[str]:
    """Start a server process (``kind``: fastapi, serve or composed), its stderr to
    ``log``; see :func:`wait_ready`."""
    with open(log, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks.serve_load", "--server", kind,
             "--settings", json.dumps(settings), "--port", str(_free_port())],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, **env},
        )  # fmt: skip


class ForkedServer:
    """A server forked from this process (``--smoke-test``'s ``fastapi``), with what
    :func:`wait_ready` and :func:`stop_servers` use of a :class:`subprocess.Popen`."""

    def __init__(self, pid: int, stdout_fd: int) -> None:
        self.pid = pid
        self.stdout = os.fdopen(stdout_fd, "r")
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                self.stdout.close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"server pid {self.pid}", timeout or 0.0)
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


#: A server process: started by :func:`launch_server` or :func:`fork_server`.
ServerProcess = subprocess.Popen[str] | ForkedServer


def can_fork_servers() -> bool:
    """Whether :func:`fork_server` may fork this process: no Ray is running in it and
    Ray Serve is not imported (it reads its ``RAY_SERVE_*`` settings, a contender's
    ``env``, when imported)."""
    import ray

    return not ray.is_initialized() and not any(m.startswith("ray.serve") for m in sys.modules)


def fork_server(kind: str, settings: dict[str, Any], env: dict[str, str], *,
                log: str) -> ForkedServer:  # fmt: skip
    """:func:`launch_server` for ``--smoke-test``: the same :func:`run_server` in a
    child forked from this process, whose imports (torch, the app) are done, rather
    than a fresh interpreter importing them again. A server that starts Ray stops it
    before the child exits (the child skips this process's exit handlers)."""
    if not can_fork_servers():
        raise RuntimeError("fork_server: this process runs Ray or imported Ray Serve")
    port = _free_port()
    read_fd, write_fd = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:  # the server: stdout to the pipe, stderr to the log, then exit
        code = 1
        try:
            os.close(read_fd)
            os.environ.update(env)
            err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(err, 2)
            os.close(err)
            os.dup2(write_fd, 1)
            os.close(write_fd)
            run_server(kind, settings, port)
            code = 0
        except BaseException:  # the child reports what ended it and exits
            import traceback

            traceback.print_exc()
        finally:
            import ray

            if ray.is_initialized():  # its Ray's processes end with it, as at exit
                with contextlib.suppress(Exception):
                    ray.shutdown()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):  # exiting anyway
                    stream.flush()
            os._exit(code)
    os.close(write_fd)
    return ForkedServer(pid, read_fd)


def wait_ready(kind: str, proc: ServerProcess, log: str) -> dict[str, str | None]:
    """Wait until a server says READY; its base URLs (``proxy``, ``direct``).

    Raises:
        RuntimeError: the server exited or timed out (with the end of its stderr ``log``).
    """
    assert proc.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            tail = Path(log).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"server {kind} exited with {proc.returncode} before READY:\n{tail}")
        if line.startswith(READY):
            return dict(json.loads(line[len(READY) :]))
    raise RuntimeError(f"server {kind} not ready after {STARTUP_TIMEOUT_S} s")


def stop_servers(procs: Sequence[ServerProcess]) -> None:
    """SIGINT to all (they shut down in parallel), then SIGKILL any still up after 60 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- load -------------------------------------------------------------------------------------


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bytes]:  # fmt: skip
    """Send one HTTP/1.1 request on a kept-alive connection; its status and body."""
    writer.write(request)
    status = int((await reader.readuntil(b"\r\n")).split()[1])
    length, chunked = 0, False
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        key, _, value = line.partition(b":")
        key = key.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append((await reader.readexactly(size + 2))[:-2])
    await reader.readuntil(b"\r\n")
    return status, b"".join(parts)


def _request(url: str, body: bytes) -> tuple[str, int, bytes]:
    """(host, port, raw HTTP/1.1 request bytes) of a predict POST."""
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    head = (f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return host, int(port), head.encode() + body


async def _load(url: str, bodies: list[bytes], concurrency: int, warmup: int) -> dict[str, Any]:
    """``concurrency`` connections, one request in flight on each, until ``bodies`` are sent."""
    requests = [_request(url, body)[2] for body in bodies]
    host, port, _ = _request(url, bodies[0])
    conns = [await asyncio.open_connection(host, port) for _ in range(concurrency)]
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def worker(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], record: bool) -> None:
        nonlocal errors
        while True:
            try:
                request = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            status, _ = await _exchange(*conn, request)
            if record:
                latencies.append((time.perf_counter() - started) * 1e3)
                errors += status != 200

    try:
        for request in requests[:warmup]:
            queue.put_nowait(request)
        await asyncio.gather(*(worker(conn, False) for conn in conns))
        for request in requests:
            queue.put_nowait(request)
        started = time.perf_counter()
        await asyncio.gather(*(worker(conn, True) for conn in conns))
        wall = time.perf_counter() - started
    finally:
        for _, writer in conns:
            writer.close()
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / wall,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "mean_ms": statistics.fmean(latencies),
    }


def _answer(url: str, body: bytes) -> dict[str, Any]:
    """One predict answer, waiting (up to a minute) until the endpoint answers 200."""

    async def ask() -> tuple[int, bytes]:
        host, port, request = _request(url, body)
        reader, writer = await asyncio.open_connection(host, port)
        try:
            return await _exchange(reader, writer, request)
        finally:
            writer.close()

    status, data = 0, b""
    for _ in range(600):
        try:
            status, data = asyncio.run(ask())
            if status == 200:
                return dict(json.loads(data))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 (last status {status}: {data[:200]!r})")


def _probabilities(answer: dict[str, Any]) -> list[list[float]]:
    return [list(p["probabilities"].values()) for p in answer["predictions"]]


# -- the run ----------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of one contender at one concurrency, with every round's numbers."""
    return {
        "rps": _median(rounds, "rps"),
        "p50_ms": _median(rounds, "p50_ms"),
        "p99_ms": _median(rounds, "p99_ms"),
        "errors": sum(r["errors"] for r in rounds),
        "rounds": rounds,
    }


def paired_ratio(results: dict[str, Any], a: str, b: str, level: str, key: str) -> float | None:
    """Median over rounds of ``a``'s ``key`` over ``b``'s in the same round (rounds are
    interleaved, so each pair saw about the same machine load); None if either is missing."""
    try:
        pairs = zip(results[a][level]["rounds"], results[b][level]["rounds"], strict=True)
        return float(statistics.median(x[key] / y[key] for x, y in pairs))
    except (KeyError, ZeroDivisionError, ValueError):
        return None


def compare(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each Serve contender against ``fastapi`` (the goals), and the two design questions."""
    out: dict[str, dict[str, Any]] = {}
    for kind in results:
        if kind == "fastapi" or "fastapi" not in results:
            continue
        rps = paired_ratio(results, kind, "fastapi", "c32", "rps")
        p50 = results[kind]["c1"]["p50_ms"]
        out[f"{kind}_vs_fastapi"] = {
            "c32_rps_ratio": rps,
            "c1_p50_ms": p50,
            "c1_p50_ratio": paired_ratio(results, kind, "fastapi", "c1", "p50_ms"),
            "goal_c32_rps_ratio_met": rps is not None and rps >= 0.5,
            "goal_c1_p50_met": p50 <= 3.0,
        }
    pairs = {
        "composed_vs_one_deployment": ("serve-composed", "serve-proxy"),
        "student_vs_ensemble": ("student-direct", "serve-direct"),
    }
    for key, (a, b) in pairs.items():
        if a in results and b in results:
            out[key] = {
                "c32_rps_ratio": paired_ratio(results, a, b, "c32", "rps"),
                "c1_p50_ratio": paired_ratio(results, a, b, "c1", "p50_ms"),
            }
    return out


def start_all(kinds: list[str], servers: dict[str, tuple[ServerProcess, str, float]],
              ref: str, student: str | None, root: str, check: bytes, *,
              together: bool = False) -> None:  # fmt: skip
    """Start every contender's server, one after the other (local Rays starting at the
    same time trip over each other), filling ``servers`` (process, predict URL, seconds
    until it answered); check that each answers ``check`` as ``fastapi`` does.

    ``together`` (the smoke test, where at most one server starts a Ray): launch every
    process first, then wait for each, so their start-ups overlap, each forked from
    this process (:func:`fork_server`) rather than a fresh interpreter.
    """
    reference: dict[str, Any] | None = None
    launched: dict[str, float] = {}

    def launch(kind: str) -> None:
        c = CONTENDERS[kind]
        served = student if c.student and student else ref
        settings = {"model": served, "registry": root, "num_cpus": 0, **c.settings}
        launched[kind] = time.perf_counter()
        start = fork_server if together and can_fork_servers() else launch_server
        proc = start(c.host, settings, c.env, log=os.path.join(root, f"{kind}.log"))
        servers[kind] = (proc, "", 0.0)

    if together:
        for kind in kinds:
            launch(kind)
    for kind in kinds:
        c = CONTENDERS[kind]
        if not together:
            launch(kind)
        proc = servers[kind][0]
        urls = wait_ready(kind, proc, os.path.join(root, f"{kind}.log"))
        base = urls["direct"] if c.path == "direct" else urls["proxy"]
        if base is None:
            raise RuntimeError(f"{kind}: the server reported no direct-ingress URL")
        url = f"{base}/v1/models/{MODEL_NAME}:predict"
        answer = _answer(url, check)
        servers[kind] = (proc, url, time.perf_counter() - launched[kind])
        if kind == "fastapi":
            reference = answer
        elif reference is not None and not c.student:
            # Same ensemble, same request path: the same probabilities.
            got, want = _probabilities(answer), _probabilities(reference)
            if not all(abs(a - b) <= 1e-9 for r, s in zip(got, want, strict=True)
                       for a, b in zip(r, s, strict=True)):  # fmt: skip
                raise RuntimeError(f"{kind} answers differ from fastapi's")
        print(f"{kind} up in {servers[kind][2]:.1f} s at {url}", flush=True)


def run_rounds(kinds: list[str], servers: dict[str, tuple[ServerProcess, str, float]],
               bodies: list[bytes], n_requests: int, reps: int) -> dict[str, Any]:  # fmt: skip
    """``reps`` rounds over the contenders (order rotated each round) at each concurrency;
    per contender: medians over rounds, every round, startup time and batching counters."""
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {
        k: {f"c{c}": [] for c in CONCURRENCY} for k in kinds
    }
    for rep in range(reps):
        order = kinds[rep % len(kinds) :] + kinds[: rep % len(kinds)]
        for kind in order:
            for concurrency in CONCURRENCY:
                n = n_requests if concurrency > 1 else max(32, n_requests // 4)
                got = asyncio.run(_load(servers[kind][1], bodies[:n], concurrency,
                                        warmup=max(16, n // 10)))  # fmt: skip
                rounds[kind][f"c{concurrency}"].append(got)
            c1, c32 = rounds[kind]["c1"][-1], rounds[kind]["c32"][-1]
            print(f"round {rep} {kind}: c1 p50 {c1['p50_ms']:.2f} ms, "
                  f"c32 {c32['rps']:.0f} req/s", flush=True)  # fmt: skip
    results: dict[str, Any] = {}
    for kind in kinds:
        _, url, startup = servers[kind]
        results[kind] = {"startup_s": startup, "url": url}
        results[kind].update({level: summarize(r) for level, r in rounds[kind].items()})
        if kind != "fastapi":
            results[kind]["batching"] = _answer_get(url.removesuffix(":predict")).get("batching")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke-test", action="store_true")
    parser.add_argument("--members", type=int, default=3, help="Ensemble members served.")
    parser.add_argument("--requests", type=int, default=800,
                        help="Requests per round at concurrency 32 (a quarter at 1).")  # fmt: skip
    parser.add_argument("--reps", type=int, default=5, help="Interleaved rounds (medians).")
    parser.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                        help=f"Comma-separated, from: {', '.join(CONTENDERS)}.")  # fmt: skip
    parser.add_argument("--results-name", default="serve_load",
                        help="Results file stem (e.g. serve_load-levers).")  # fmt: skip
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.server:
        run_server(args.server, json.loads(args.settings), args.port)
        return 0
    smoke = args.smoke_test
    members = 1 if smoke else args.members
    n_requests = 64 if smoke else args.requests
    reps = 1 if smoke else args.reps
    kinds = list(SMOKE_CONTENDERS) if smoke else args.contenders.split(",")
    unknown = sorted(set(kinds) - set(CONTENDERS))
    if unknown:
        parser.error(f"--contenders: unknown {unknown}; allowed: {', '.join(CONTENDERS)}")
    if "fastapi" in kinds:  # the reference every answer is checked against comes first
        kinds.remove("fastapi")
        kinds.insert(0, "fastapi")
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as root:
        ref = register(root, members, epochs=1 if smoke else 3)
        records = sample_records(200)
        floor_us: dict[str, Any] = dict(floor(root, ref, records, repeats=50 if smoke else 1000))
        student = None
        if any(CONTENDERS[k].student for k in kinds):
            student = register_student(root, ref, epochs=2 if smoke else STUDENT_EPOCHS)
            floor_us["student"] = floor(root, student, records, repeats=50 if smoke else 1000)
        bodies = [json.dumps({"instances": [records[i % len(records)]]}).encode()
                  for i in range(n_requests)]  # fmt: skip
        check = json.dumps({"instances": records[:16]}).encode()
        results: dict[str, Any] = {}
        servers: dict[str, tuple[ServerProcess, str, float]] = {}
        try:
            # The smoke test's servers start together when at most one of them starts a Ray.
            together = smoke and sum(CONTENDERS[k].host != "fastapi" for k in kinds) <= 1
            start_all(kinds, servers, ref, student, root, check, together=together)
            results = run_rounds(kinds, servers, bodies, n_requests, reps)
        finally:
            stop_servers([proc for proc, _, _ in servers.values()])
    wall = time.perf_counter() - started
    table = report_table(results, members, floor_us, reps, n_requests)
    comparisons = compare(results)
    path = write_results(
        args.results_name,
        {"members": members, "requests_c32": n_requests, "reps": reps, "floor_us": floor_us,
         "comparisons": comparisons, "wall_s": wall,
         "load_average_1m": {"start": load_start, "end": os.getloadavg()[0]},
         "contenders": results,
         "definitions": {k: {"host": CONTENDERS[k].host, "settings": CONTENDERS[k].settings,
                             "env": CONTENDERS[k].env, "path": CONTENDERS[k].path}
                         for k in kinds}},
        table,
        smoke=smoke,
    )  # fmt: skip
    print(table)
    print(f"wrote {path} in {wall:.0f} s")
    return 0


def _answer_get(url: str) -> dict[str, Any]:
    """GET ``url`` (a model's description) as JSON."""
    import httpx

    return dict(httpx.get(url, timeout=30).json())


def report_table(results: dict[str, Any], members: int, floor_us: dict[str, Any], reps: int,
                 n_requests: int) -> str:  # fmt: skip
    """The markdown table (medians over rounds) and the notes under it."""
    rows = []
    for kind, r in results.items():
        ratio = paired_ratio(results, kind, "fastapi", "c32", "rps")
        rows.append([
            kind, r["c1"]["p50_ms"], r["c1"]["p99_ms"], r["c1"]["rps"], r["c32"]["rps"],
            r["c32"]["p50_ms"], r["c32"]["p99_ms"], ratio if ratio is not None else "-",
            (r.get("batching") or {}).get("mean_batch_requests") or "-",
        ])  # fmt: skip
    headers = ["endpoint", "c1 p50 ms", "c1 p99 ms", "c1 req/s", "c32 req/s", "c32 p50 ms",
               "c32 p99 ms", "c32 vs fastapi", "mean batch"]  # fmt: skip
    table = markdown_table(headers, rows)
    table += (
        f"\n\nMedians over {reps} interleaved rounds ({n_requests} requests at concurrency 32, "
        f'{max(32, n_requests // 4)} at 1, per round); "c32 vs fastapi" is the median of '
        "the per-round ratios (each round loads the contenders back to back). "
        f"Model: {members}-member digits MLP "
        "ensemble (width 256, depth 2), one record per request. In-process floor: "
        f"{floor_us['request_us']:.0f} us per request (validate, encode, forward, format), "
        f"forward {floor_us['forward_1_us']:.0f} us for 1 row and "
        f"{floor_us['forward_32_us']:.0f} us for 32 rows. Goals (issue 7): c32 >= 0.5x "
        "fastapi's req/s, c1 p50 <= 3 ms. 2 cores shared by the servers and the load "
        "generator."
    )
    if "student" in floor_us:
        table += (
            f"\n\nStudent (MLP width {STUDENT_MODEL['width']}, depth {STUDENT_MODEL['depth']}) "
            f"in-process floor: {floor_us['student']['request_us']:.0f} us per request, forward "
            f"{floor_us['student']['forward_32_us']:.0f} us for 32 rows."
        )
    return table


if __name__ == "__main__":
    raise SystemExit(main())
