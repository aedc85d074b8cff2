"""What a local sweep, and a driver joining a cluster, listen on; what is left after a kill.

Every Ray here runs in a subprocess with its own ``HOME`` (so Ray's token
file is created fresh) and its own regtune state folder. Only the processes
these tests start are inspected or stopped (other Rays may run on this
machine; ``ray stop`` is never used). Traffic goes to loopback only:
127.0.0.1, and 127.0.0.2 (also loopback) standing for an external address.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from regtune.platform.tune.local_sessions import STATE_ENV, reap_dead_sessions
from regtune.platform.tune.loopback import (
    ALL_INTERFACES_ON_EXTERNAL_NODE,
    is_all_interfaces,
    is_loopback,
)
from regtune.platform.tune.token_file import ensure_private_token
from tests.conftest import free_ports
from tests.platform.tune.stubs import TINY_SPEC

pytestmark = pytest.mark.ray

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 180.0
#: Stands for an external address: not 127.0.0.1 (so Ray treats it as a
#: node address like any other), yet on the loopback interface.
EXTERNAL = "127.0.0.2"
#: Banners a regtune user should not see unless --verbose.
BANNERS = (
    "Token authentication is enabled",
    "Configuration for experiment",
    "View detailed results here",
    "Started a local Ray instance",
)
#: gRPC methods of the services Ray's servers offer; each server implements
#: one of them and must refuse it without a token.
GRPC_METHODS = (
    "/ray.rpc.NodeInfoGcsService/GetAllNodeInfo",
    "/ray.rpc.NodeManagerService/GetNodeStats",
    "/ray.rpc.ObjectManagerService/Pull",
    "/ray.rpc.CoreWorkerService/GetCoreWorkerStats",
    "/ray.rpc.ReporterService/ReportOCMetrics",
)

SWEEP_DRIVER = """
import json, sys
from regtune.platform.tune.sweep import run_sweep
from regtune.search_spaces import load_spec
import ray
outcome = run_sweep(load_spec(json.loads(sys.argv[1])), storage=sys.argv[2], name="loop")
address = ray.get_runtime_context().gcs_address
print("READY " + json.dumps({"trials": len(outcome.trials), "address": address}), flush=True)
sys.stdin.read()
"""

JOIN_DRIVER = """
import json, sys
import ray
from regtune.platform.tune.runtime import ensure_ray
ensure_ray(sys.argv[1])
print("READY " + json.dumps({"sum": ray.get(ray.put(2)) + 1}), flush=True)
sys.stdin.read()
"""


@dataclass(frozen=True)
class Listener:
    pid: int
    name: str
    kind: str
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid}, {self.kind}) on {self.ip}:{self.port}"


def _psutil() -> Any:
    import importlib

    import ray  # noqa: F401  (puts Ray's bundled psutil on the path)

    return importlib.import_module("psutil")


def _clean_env(home: Path, state: Path) -> dict[str, str]:
    drop = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in drop and k != "RAY_AUTH_TOKEN_PATH"}
    env["HOME"] = str(home)
    env[STATE_ENV] = str(state)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _wait_ready(proc: subprocess.Popen[str], err_path: Path) -> dict[str, Any]:
    """The JSON after the driver's READY line (fails with its stderr if it dies)."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    lines: list[str] = []
    while time.monotonic() < deadline:
        if selector.select(timeout=1.0):
            line = proc.stdout.readline()
            if line.startswith("READY "):
                return dict(json.loads(line[len("READY ") :]))
            if line:
                lines.append(line)
                continue
        if proc.poll() is not None:
            break
    pytest.fail(
        f"driver not ready (exit {proc.poll()}):\n{''.join(lines)[-2000:]}\n"
        f"{err_path.read_text()[-4000:]}"
    )


def _tree(psutil: Any, roots: list[int]) -> list[Any]:
    """The processes ``roots`` and everything below them, each once."""
    out: dict[int, Any] = {}
    for pid in roots:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                out[proc.pid] = proc
    return list(out.values())


def _kind(proc: Any, driver_pid: int) -> str:
    name = proc.name()
    if name in ("gcs_server", "raylet"):
        return str(name)
    if name == "ray::DashboardAgent":
        return "dashboard_agent"
    if name == "ray::RuntimeEnvAgent":
        return "runtime_env_agent"
    if proc.pid == driver_pid or name.startswith("ray::"):
        return "core_worker"
    command = " ".join(proc.cmdline())
    for marker, kind in (
        ("autoscaler/_private/monitor.py", "monitor"),
        ("dashboard/dashboard.py", "dashboard"),
        ("log_monitor.py", "log_monitor"),
    ):
        if marker in command:
            return kind
    return f"other:{name}"


def _listeners(psutil: Any, procs: list[Any], driver_pid: int) -> list[Listener]:
    out = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
            kind = _kind(proc, driver_pid)
            name = proc.name()
        except psutil.Error:
            continue
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN:
                out.append(Listener(proc.pid, name, kind, conn.laddr.ip, conn.laddr.port))
    return out


def _serves_metrics(port: int) -> bool:
    """Whether ``127.0.0.1:port`` answers ``GET /metrics`` with Prometheus text."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.status == 200 and b"# TYPE" in resp.read(1 << 20)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return False


def _accepts(port: int) -> bool:
    """Whether ``127.0.0.1:port`` still accepts a TCP connection."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _refusal(port: int) -> str | None:
    """How ``127.0.0.1:port`` refuses a request without the token, or None if it did not.

    gRPC: one of Ray's methods answers UNAUTHENTICATED (the others
    UNIMPLEMENTED) and none succeeds; HTTP: 401 or 403.
    """
    import grpc

    codes = set()
    for method in GRPC_METHODS:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            channel.unary_unary(method)(b"", timeout=5)
            codes.add("OK")
        except grpc.RpcError as exc:
            codes.add(exc.code().name)
        finally:
            channel.close()
    if "UNAUTHENTICATED" in codes and "OK" not in codes:
        return "gRPC UNAUTHENTICATED"
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).close()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return f"HTTP {exc.code}"
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        pass
    return None


def _stop(psutil: Any, procs: list[Any]) -> None:
    """Kill exactly these processes (checked by PID and start time)."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running():
                proc.kill()
    psutil.wait_procs(procs, timeout=10)


def _alive(psutil: Any, procs: list[Any]) -> list[str]:
    out = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{proc.name()} (pid {proc.pid})")
    return out


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Ray's socket paths under a temp dir must stay below 108 characters.
    path = Path(tempfile.mkdtemp(prefix="rtl-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_local_sweep_listens_on_loopback_and_leaves_nothing_after_a_kill(
    short_tmp: Path,
) -> None:
    psutil = _psutil()
    started = time.monotonic()
    home, state = short_tmp / "home", short_tmp / "state"
    home.mkdir()
    env = _clean_env(home, state)
    err_path = short_tmp / "driver.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", SWEEP_DRIVER, json.dumps(TINY_SPEC), str(short_tmp / "runs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            start_new_session=True,
        )
    procs: list[Any] = []
    try:
        ready = _wait_ready(proc, err_path)
        assert ready["trials"] == 1
        assert ready["address"].startswith("127.0.0.1:")
        print(f"sweep ready after {time.monotonic() - started:.1f} s")
        procs = _tree(psutil, [proc.pid])
        listeners = _listeners(psutil, procs, proc.pid)
        kinds = {item.kind for item in listeners}
        assert {"gcs_server", "raylet", "core_worker"} <= kinds, listeners

        # 1. Nothing listens beyond loopback (the documented list for a local Ray is empty).
        print("\n".join(map(str, listeners)))
        exposed = [str(item) for item in listeners if not is_loopback(item.ip)]
        assert exposed == []

        # 2. Every port refuses a request without the token, but Prometheus
        # metrics, which are read-only and, here, on loopback only. A port
        # closed by the time it is probed (the finished trial's worker
        # exiting) serves nothing and is not counted.
        unguarded = [
            str(item)
            for item in listeners
            if _refusal(item.port) is None
            and not _serves_metrics(item.port)
            and _accepts(item.port)
        ]
        assert unguarded == []

        # 3. Ray's token file was created readable by its owner only.
        token = home / ".ray" / "auth_token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
        assert len(token.read_text()) == 64

        # 4. A second driver joins it by its loopback address, and listens on loopback.
        join_err = short_tmp / "join.err"
        with join_err.open("w") as err:
            joined = subprocess.Popen(
                [sys.executable, "-c", JOIN_DRIVER, ready["address"]],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                # Ray sends the token to an address given explicitly only when asked.
                env={**env, "RAY_AUTH_MODE": "token"},
            )
        try:
            assert _wait_ready(joined, join_err) == {"sum": 3}
            mine = _listeners(psutil, [psutil.Process(joined.pid)], joined.pid)
            assert [item.kind for item in mine] == ["core_worker"]
            assert [str(item) for item in mine if not is_loopback(item.ip)] == []
        finally:
            assert joined.stdin is not None and joined.stdout is not None
            joined.stdin.close()  # it exits
            joined.wait(timeout=60)
            joined.stdout.close()

        # 5. A killed driver: the next regtune command stops what is left of its Ray.
        records = list((state / "ray-sessions").glob("session_*.json"))
        assert len(records) == 1
        session_dir = json.loads(records[0].read_text())["session_dir"]
        procs = _tree(psutil, [proc.pid])  # workers started since are included
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        reaping = time.monotonic()
        stopped = reap_dead_sessions({STATE_ENV: str(state)})
        print(f"reaped in {time.monotonic() - reaping:.1f} s: {stopped}")
        assert [s.session_dir for s in stopped] in ([session_dir], [])
        assert _alive(psutil, procs) == []
        assert list((state / "ray-sessions").glob("*.json")) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        _stop(psutil, procs)

    # 6. No banner reached the user.
    assert proc.stdout is not None and proc.stdin is not None
    output = proc.stdout.read() + err_path.read_text()
    proc.stdout.close()
    proc.stdin.close()
    assert [b for b in BANNERS if b in output] == []


def _free_port() -> int:
    return free_ports(1)[0]


def test_join_on_an_external_address_binds_it_or_the_documented_list(
    short_tmp: Path,
) -> None:
    psutil = _psutil()
    home, state = short_tmp / "home", short_tmp / "state"
    home.mkdir()
    env = _clean_env(home, state)
    env["RAY_AUTH_MODE"] = "token"
    ensure_private_token(env)
    port, client_port, agent_port = free_ports(3)
    head_log = short_tmp / "head.log"
    command = [
        str(BIN / "ray"), "start", "--head", "--block",
        "--node-ip-address", EXTERNAL,
        "--port", str(port),
        "--include-dashboard=false",
        # Fixed defaults (10001, 52365) would clash with another Ray here.
        "--ray-client-server-port", str(client_port),
        "--dashboard-agent-listen-port", str(agent_port),
        "--num-cpus", "1", "--num-gpus", "0",
        "--temp-dir", str(short_tmp / "ray"),
        "--disable-usage-stats",
    ]  # fmt: skip
    with head_log.open("w") as log:
        head = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    err_path = short_tmp / "driver.err"
    driver: subprocess.Popen[str] | None = None
    procs: list[Any] = []
    try:
        with err_path.open("w") as err:
            driver = subprocess.Popen(
                [sys.executable, "-c", JOIN_DRIVER, f"{EXTERNAL}:{port}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
                start_new_session=True,
            )
        try:
            assert _wait_ready(driver, err_path) == {"sum": 3}
        except BaseException:
            print(head_log.read_text()[-3000:])
            raise
        procs = _tree(psutil, [head.pid, driver.pid])
        listeners = _listeners(psutil, procs, driver.pid)
        print("\n".join(map(str, listeners)))
        node_or_local = {EXTERNAL, "127.0.0.1", "::1", f"::ffff:{EXTERNAL}", "::ffff:127.0.0.1"}
        wild, wrong = [], []
        for item in listeners:
            if item.ip in node_or_local:
                continue
            if not is_all_interfaces(item.ip):
                wrong.append(str(item))
                continue
            metrics = _serves_metrics(item.port)
            kind = f"{item.kind}_metrics" if metrics else item.kind
            wild.append((kind, item, metrics))
        # Nothing on an address the user did not ask for (the machine's own).
        assert wrong == []
        # What binds every interface is on the documented list, with its guard.
        undocumented = [str(i) for k, i, _ in wild if k not in ALL_INTERFACES_ON_EXTERNAL_NODE]
        assert undocumented == []
        for kind, item, metrics in wild:
            guard = ALL_INTERFACES_ON_EXTERNAL_NODE[kind][1]
            if guard == "token":
                assert _refusal(item.port) == "gRPC UNAUTHENTICATED", str(item)
            else:
                assert metrics, str(item)
        # The driver regtune started: its one server, the core worker's, is token-guarded.
        mine = [item for item in listeners if item.pid == driver.pid]
        assert [item.kind for item in mine] == ["core_worker"]
        assert _refusal(mine[0].port) == "gRPC UNAUTHENTICATED"
    finally:
        roots = [head.pid] + ([driver.pid] if driver is not None else [])
        procs = procs or _tree(psutil, roots)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # `ray start` and what it started
        for proc in (driver, head):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        if driver is not None:
            for pipe in (driver.stdin, driver.stdout):
                if pipe is not None:
                    pipe.close()
        _stop(psutil, procs)


LOCAL_DRIVER = """
import json
import ray
from regtune.platform.tune.runtime import start_local_ray
start_local_ray(num_cpus=1)
facts = {"cpus": ray.cluster_resources().get("CPU"),
         "address": ray.get_runtime_context().gcs_address}
ray.shutdown()
print("LOCAL " + json.dumps(facts), flush=True)
"""


@pytest.mark.parametrize("elsewhere", ["RAY_ADDRESS", "ray_current_cluster"])
def test_a_local_start_never_joins_what_the_environment_names(
    elsewhere: str, short_tmp: Path
) -> None:
    """`regtune sweep`/`serve` without --address start a Ray of their own even
    when ``$RAY_ADDRESS`` holds the dashboard address users export for `ray
    job submit`, or `ray start` left its cluster's address in Ray's temp
    folder (here a free port: nothing listens). A bare ``ray.init()``
    refused the first and tried to join the second."""
    env = _clean_env(short_tmp / "home", short_tmp / "state")
    env["RAY_TMPDIR"] = str(short_tmp)
    taken = f"127.0.0.1:{_free_port()}"
    if elsewhere == "RAY_ADDRESS":
        env["RAY_ADDRESS"] = f"http://{taken}"
    else:
        (short_tmp / "ray").mkdir()
        (short_tmp / "ray" / "ray_current_cluster").write_text(taken)
    done = subprocess.run(
        [sys.executable, "-c", LOCAL_DRIVER],
        capture_output=True,
        text=True,
        env=env,
        timeout=STARTUP_TIMEOUT_S,
        cwd=short_tmp,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOCAL "))
    facts = json.loads(line.removeprefix("LOCAL "))
    assert facts["cpus"] == 1.0
    assert facts["address"].startswith("127.0.0.1:") and facts["address"] != taken
