"""Job submission against a real Ray cluster started with `ray start --head`.

The module's cluster is separate from the suite's ``ray.init`` one: its own
ports, its own ``--temp-dir``, token authentication on, every server on
127.0.0.1. It is torn down by killing exactly the processes it started
(`ray stop` would kill every Ray on the machine, the suite's included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
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
import requests
import yaml

from regtune.errors import RegtuneError, SpecError
from regtune.platform import jobs
from regtune.platform.jobs import (
    ADDRESS_CONFLICT,
    AUTH_MODE_ENV,
    BAD_ADDRESS,
    BAD_ENV_VAR,
    DATA_ON_CLUSTER,
    DATA_OUTSIDE_WORKING_DIR,
    DEFAULT_ADDRESS,
    ENV_VAR_WITHOUT_VALUE,
    LOCAL_DATA_NEEDS_WORKING_DIR,
    LOST_CONTACT,
    LOST_CONTACT_EXIT,
    METADATA_KEY,
    RELATIVE_STORAGE,
    SPEC_METADATA_KEY,
    SPEC_OUTSIDE_WORKING_DIR,
    URI_DATA_PATH,
    WORKING_DIR_MISSING,
    JobContactLost,
    auth_headers,
    build_entrypoint,
    exit_code_for,
    parse_env_vars,
    resolve_address,
    run_job,
    submission_id_for,
    submit_sweep,
)
from regtune.platform.tune.ray_private import has_auth_token, reset_auth_token_cache
from regtune.search_spaces import preset_path
from tests.conftest import PRESTART_ENV, free_ports

pytestmark = pytest.mark.ray

BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
STARTUP_TIMEOUT_S = 90.0
# The smallest sweep: these tests check submission, not the search.
# grace_period 1: a rung below max_epochs (a 2-epoch asha with grace 2 is refused).
SWEEP_OVERRIDES = ("budget.samples=1", "budget.max_epochs=2", "scheduler.grace_period=1")
#: An experiment named by the rule for a spec called "quickstart".
GENERATED_NAME = r"quickstart-\d{8}-\d{6}-[0-9a-f]{4}"


def _free_port() -> int:
    return free_ports(1)[0]


def _closed_address() -> str:
    """An HTTP address on this machine where nothing listens."""
    return f"http://127.0.0.1:{_free_port()}"


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # Field 4 is the parent pid; field 2 (the name) may hold spaces.
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _ensure_default_token(env: dict[str, str]) -> None:
    if not has_auth_token():
        # A fresh machine: create ~/.ray/auth_token the documented way.
        subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True)
        reset_auth_token_cache()


@dataclass(frozen=True)
class Cluster:
    address: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """`ray start --head --block` with token auth, on free loopback ports."""
    # Short: Ray's socket paths under it must stay below 108 characters.
    temp_dir = Path(tempfile.mkdtemp(prefix="rtj-"))
    env = {
        k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env[AUTH_MODE_ENV] = "token"
    # Without it Ray swaps 127.0.0.1 for the machine's address (docs/security.md).
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    _ensure_default_token(env)
    port, dashboard_port, client_port, agent_port = free_ports(4)
    command = [
        RAY, "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1",
        "--port", str(port),
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard_port),
        "--include-dashboard=true",
        # Fixed defaults (10001, 52365) would clash with another Ray here.
        "--ray-client-server-port", str(client_port),
        "--dashboard-agent-listen-port", str(agent_port),
        "--num-cpus", "2",
        "--num-gpus", "0",
        "--temp-dir", str(temp_dir),
        "--disable-usage-stats",
    ]  # fmt: skip
    log_path = temp_dir / "ray-start.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # The idle workers Ray would prestart for its first driver serve
            # no job here (each stays ray::IDLE): not started.
            env={**env, PRESTART_ENV: "0"},
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        _wait_for_jobs_api(address, proc, log_path)
        yield Cluster(address=address, env=env)
    finally:
        # Only what this fixture started: its process group (gcs, raylet,
        # dashboard, ...) and every descendant (workers have their own groups).
        pids = _descendants(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_jobs_api(address: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            JobSubmissionClient(address, headers=auth_headers(address)).list_jobs()
            return
        except (ConnectionError, RuntimeError, OSError):
            time.sleep(0.5)
    pytest.fail(f"no Jobs API at {address} after {STARTUP_TIMEOUT_S} s")


def _client(cluster: Cluster) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.address, headers=auth_headers(cluster.address))


def _python(code: str) -> str:
    return shlex.join([sys.executable, "-c", code])


def _quickstart_copy(folder: Path, name: str = "my-sweep.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    shutil.copy(preset_path("quickstart"), path)
    return path


def _sweep_available() -> bool:
    """Whether the CLI has a ``sweep`` command (checked without a subprocess)."""
    from regtune.platform.cli import app

    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    return "sweep" in names


SWEEP_AVAILABLE = _sweep_available()


# --- no cluster needed -------------------------------------------------------


def test_resolve_address_default_env_and_conflicts() -> None:
    assert resolve_address(None, environ={}) == DEFAULT_ADDRESS
    assert resolve_address("http://10.0.0.5:8265/", environ={}) == "http://10.0.0.5:8265"
    env = {"RAY_API_SERVER_ADDRESS": "http://127.0.0.1:9000"}
    assert resolve_address(None, environ=env) == "http://127.0.0.1:9000"
    assert resolve_address("http://127.0.0.1:9000", environ=env) == "http://127.0.0.1:9000"
    with pytest.raises(SpecError) as info:
        resolve_address("http://127.0.0.1:8265", environ=env)
    assert str(info.value) == ADDRESS_CONFLICT.format(
        var="RAY_API_SERVER_ADDRESS", value="http://127.0.0.1:9000", address="http://127.0.0.1:8265"
    )
    for bad in ("127.0.0.1:8265", "ray://127.0.0.1:10001", "auto"):
        with pytest.raises(SpecError) as info:
            resolve_address(bad, environ={})
        assert str(info.value) == BAD_ADDRESS.format(example=DEFAULT_ADDRESS, address=bad)


def test_auth_headers_only_to_this_machine_and_only_when_mode_unset() -> None:
    # Ray's setting, when given, is left to Ray's client.
    assert auth_headers("http://127.0.0.1:8265", environ={AUTH_MODE_ENV: "token"}) == {}
    assert auth_headers("http://127.0.0.1:8265", environ={AUTH_MODE_ENV: "disabled"}) == {}
    # A remote cluster never gets the local token unasked.
    assert auth_headers("http://10.1.2.3:8265", environ={}) == {}
    assert auth_headers("https://ray.example.com", environ={}) == {}


def test_entrypoint_id_env_and_exit_codes() -> None:
    entry = build_entrypoint(
        "my spec.yaml",
        name="l2-path",
        overrides=["penalties.l2={loguniform: [1e-6, 1e-2]}"],
        storage="s3://bucket/runs",
        extra_args=["--resume"],
    )
    assert shlex.split(entry) == [
        "regtune", "sweep", "my spec.yaml", "--address", "auto", "--name", "l2-path",
        "--set", "penalties.l2={loguniform: [1e-6, 1e-2]}",
        "--storage", "s3://bucket/runs", "--resume",
    ]  # fmt: skip
    # --resume without a name: the cluster picks the newest experiment of the spec.
    assert shlex.split(build_entrypoint("l2-path", name=None, resume=True)) == [
        "regtune", "sweep", "l2-path", "--address", "auto", "--resume",
    ]  # fmt: skip
    first, second = submission_id_for("l2-path"), submission_id_for("l2-path")
    assert first.startswith("regtune-l2-path-")
    assert first != second
    assert parse_env_vars(["A=1", "REGTUNE_CACHE_DIR=/data/x=y", "EMPTY="]) == {
        "A": "1",
        "REGTUNE_CACHE_DIR": "/data/x=y",
        "EMPTY": "",
    }
    # The key is named, never the value (it may be a secret).
    for bad, key in (("1X=2", "1X"), ("=v", ""), ("A-B=1", "A-B")):
        with pytest.raises(SpecError) as info:
            parse_env_vars([bad])
        assert str(info.value) == BAD_ENV_VAR.format(key=key)
    with pytest.raises(SpecError) as info:
        parse_env_vars(["NOEQUALS"])
    assert str(info.value) == ENV_VAR_WITHOUT_VALUE.format(number=1, length=8)
    assert [exit_code_for(s) for s in ("SUCCEEDED", "FAILED", "STOPPED", "RUNNING")] == [0, 1, 1, 0]


def test_bad_inputs_fail_before_any_contact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of these names the problem; the address is closed, so an error
    about the cluster would mean something was sent first."""
    closed = _closed_address()
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("name: bad-spec\ndataset: digits\npenalties: {l3: 0.1}\n")
    with pytest.raises(SpecError, match="l3"):
        submit_sweep(str(bad_spec), address=closed)
    with pytest.raises(SpecError, match=r"budget\.samples"):
        submit_sweep("quickstart", address=closed, overrides=["budget.samples=-1"])
    with pytest.raises(SpecError, match="--name 'Bad Name'"):
        submit_sweep("quickstart", address=closed, name="Bad Name")
    # A name the experiment folder holds but Ray's job log file name would not
    # (it adds 46 bytes): refused here, not a job failing on the cluster.
    with pytest.raises(SpecError, match=r"at most 209 .* the job's log file \(job-driver-"):
        submit_sweep("quickstart", address=closed, name="a" * 210)
    with pytest.raises(SpecError) as info:
        submit_sweep("quickstart", address=closed, working_dir=tmp_path / "absent")
    assert str(info.value) == WORKING_DIR_MISSING.format(working_dir=tmp_path / "absent")
    spec = _quickstart_copy(tmp_path / "elsewhere")
    (tmp_path / "wd").mkdir()
    with pytest.raises(SpecError) as info:
        submit_sweep(str(spec), address=closed, working_dir=tmp_path / "wd")
    assert str(info.value) == SPEC_OUTSIDE_WORKING_DIR.format(
        spec=spec, working_dir=tmp_path / "wd"
    )
    csv_spec = tmp_path / "csv.yaml"
    # The data exist here (the spec is valid), but only the spec file would travel.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("a,y\n1,0\n2,1\n3,0\n4,1\n")
    raw = yaml.safe_load(preset_path("quickstart").read_text())
    raw["dataset"] = {"name": "csv", "path": "data/train.csv", "label": "y"}
    csv_spec.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError) as info:
        submit_sweep(str(csv_spec), address=closed)
    assert str(info.value) == LOCAL_DATA_NEEDS_WORKING_DIR.format(
        spec=csv_spec, path="data/train.csv"
    )
    # The same through --set (relative to the working directory there).
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        submit_sweep(str(csv_spec), address=closed, overrides=["dataset.path=data/train.csv"])
    assert str(info.value) == LOCAL_DATA_NEEDS_WORKING_DIR.format(
        spec=csv_spec, path="data/train.csv"
    )


def _csv_spec(folder: Path, data_path: str) -> Path:
    """A quickstart copy in ``folder`` reading the CSV at ``data_path``."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(preset_path("quickstart").read_text())
    raw["dataset"] = {"name": "csv", "path": data_path, "label": "y"}
    spec = folder / "csv.yaml"
    spec.write_text(yaml.safe_dump(raw))
    return spec


def _passes_the_checks(**kwargs: Any) -> list[str]:
    """Submit to a closed address: every check here passed when what stops it
    is the cluster (not a SpecError). Returns the lines logged."""
    lines: list[str] = []
    with pytest.raises(RegtuneError) as caught:
        submit_sweep(address=_closed_address(), log=lines.append, **kwargs)
    assert not isinstance(caught.value, SpecError), caught.value
    return lines


def test_the_data_path_is_checked_where_the_job_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = _closed_address()
    rows = "a,y\n1,0\n2,1\n3,0\n4,1\n"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ok.csv").write_text(rows)
    wd = tmp_path / "wd"
    # A relative path leaving the uploaded folder: the file exists here, not in the job.
    spec = _csv_spec(wd, "../data/ok.csv")
    with pytest.raises(SpecError) as info:
        submit_sweep(str(spec), address=closed, working_dir=wd)
    assert str(info.value) == DATA_OUTSIDE_WORKING_DIR.format(
        path="../data/ok.csv", landed=tmp_path / "data" / "ok.csv", working_dir=wd
    )
    # The same through --set (relative to the folder's root, where the job runs).
    monkeypatch.chdir(wd)
    with pytest.raises(SpecError, match="outside --working-dir"):
        submit_sweep(
            str(spec), address=closed, working_dir=wd, overrides=["dataset.path=../data/ok.csv"]
        )
    # Inside the folder: the uploaded file itself is checked.
    spec = _csv_spec(wd, "data/ok.csv")
    with pytest.raises(SpecError, match="file not found"):
        submit_sweep(str(spec), address=closed, working_dir=wd)
    (wd / "data").mkdir()
    (wd / "data" / "ok.csv").write_text(rows)
    # Uploaded, so no "read on the cluster" line (the template's text before {path}).
    on_cluster = DATA_ON_CLUSTER.split("{path}")[0]
    lines = _passes_the_checks(spec=str(spec), working_dir=wd)
    assert not [line for line in lines if line.startswith(on_cluster)], lines
    # A --set path is found under the folder's root, wherever this command runs.
    monkeypatch.chdir(tmp_path / "data")
    _passes_the_checks(spec=str(spec), working_dir=wd, overrides=["dataset.path=data/ok.csv"])
    with pytest.raises(SpecError, match="file not found"):
        submit_sweep(str(spec), address=closed, working_dir=wd, overrides=["dataset.path=ok.csv"])


def test_an_absolute_data_path_is_read_on_the_cluster_and_a_uri_is_refused(
    tmp_path: Path,
) -> None:
    closed = _closed_address()
    # Only on the cluster: not looked for here, and the output says so.
    spec = _csv_spec(tmp_path, "/cluster/only/data.csv")
    lines = _passes_the_checks(spec=str(spec))
    assert DATA_ON_CLUSTER.format(path="/cluster/only/data.csv") in lines
    lines = _passes_the_checks(
        spec="quickstart", overrides=["dataset.name=csv", "dataset.label=y", "dataset.path=~/d.csv"]
    )
    assert DATA_ON_CLUSTER.format(path="~/d.csv") in lines
    for uri in ("s3://my-bucket/data.csv", "gs://b/d.parquet"):
        # Refused before any contact with submit's own message (the spec's own
        # check would tell to copy the file onto this machine, where the job
        # does not read it), however the path is given.
        spec = _csv_spec(tmp_path, uri)
        with pytest.raises(SpecError) as info:
            submit_sweep(str(spec), address=closed)
        assert str(info.value) == URI_DATA_PATH.format(path=uri)
        set_spec = str(_csv_spec(tmp_path / "set", "/x.csv"))
        for override in (
            f"dataset.path={uri}",
            f"dataset={{name: csv, path: '{uri}', label: y}}",
        ):
            with pytest.raises(SpecError) as info:
                submit_sweep(set_spec, address=closed, overrides=[override])
            assert str(info.value) == URI_DATA_PATH.format(path=uri)
        with pytest.raises(SpecError) as info:
            submit_sweep(
                "quickstart",
                address=closed,
                overrides=["dataset.name=csv", "dataset.label=y", f"dataset.path={uri}"],
            )
        assert str(info.value) == URI_DATA_PATH.format(path=uri)


def test_a_relative_storage_is_refused_before_any_contact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job runs in Ray's temporary folder on the cluster: results under a
    relative root would go with it."""
    closed = _closed_address()
    monkeypatch.chdir(tmp_path)
    for storage in ("./runs", "runs", "../shared/runs"):
        with pytest.raises(SpecError) as info:
            submit_sweep("quickstart", address=closed, storage=storage)
        assert str(info.value) == RELATIVE_STORAGE.format(option="--storage", storage=storage)
    # The root the job would use when --storage is not given: REGTUNE_STORAGE sent with --env.
    with pytest.raises(SpecError) as info:
        submit_sweep("quickstart", address=closed, env_vars={"REGTUNE_STORAGE": "runs"})
    assert str(info.value) == RELATIVE_STORAGE.format(
        option="--env REGTUNE_STORAGE", storage="runs"
    )
    with pytest.raises(SpecError, match="--storage 'runs' is relative"):
        submit_sweep(
            "quickstart", address=closed, storage="runs", env_vars={"REGTUNE_STORAGE": "/abs"}
        )
    # Absolute paths (~ is the cluster user's home) and URIs pass this check:
    # what stops them is the closed address, after it.
    for storage in ("/shared/runs", "~/runs", "s3://bucket/runs", "gs://bucket/runs"):
        with pytest.raises(RegtuneError) as caught:
            submit_sweep("quickstart", address=closed, storage=storage)
        assert not isinstance(caught.value, SpecError), storage
    with pytest.raises(RegtuneError) as caught:
        submit_sweep(
            "quickstart", address=closed, storage="/abs", env_vars={"REGTUNE_STORAGE": "runs"}
        )
    assert not isinstance(caught.value, SpecError)


def test_unreachable_address_names_it_and_how_to_start_one() -> None:
    closed = _closed_address()
    with pytest.raises(RegtuneError) as info:
        submit_sweep("quickstart", address=closed)
    assert not isinstance(info.value, SpecError)
    message = str(info.value)
    assert closed in message
    assert (
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=token ray start --head "
        "--node-ip-address 127.0.0.1 --dashboard-host 127.0.0.1" in message
    )
    assert "ray dashboard cluster.yaml" in message


class _AgentStartingClient:
    """Answers submit_job as Ray's Jobs client does while a fresh cluster's job
    agent is not up (that window is a race, so it is replayed here)."""

    def __init__(self, refusals: int, message: str) -> None:
        self.refusals, self.message, self.calls = refusals, message, 0

    def submit_job(self, **kwargs: Any) -> str:
        self.calls += 1
        if self.calls <= self.refusals:
            raise RuntimeError(self.message)
        return "raysubmit_1"


def test_submission_waits_for_a_job_agent_and_fails_fast_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    monkeypatch.setattr(jobs, "AGENT_RETRY_EVERY_S", 0.01)
    busy = (
        "Request failed with status code 500: No available agent to submit job, "
        "please try again later.."
    )
    client = _AgentStartingClient(2, busy)
    assert jobs._submit(client, "http://127.0.0.1:8265", entrypoint="x") == "raysubmit_1"
    assert client.calls == 3
    broken = _AgentStartingClient(5, "Request failed with status code 400: bad runtime_env")
    with pytest.raises(RegtuneError, match=r"did not take the job: .*bad runtime_env"):
        jobs._submit(broken, "http://127.0.0.1:8265", entrypoint="x")
    assert broken.calls == 1
    monkeypatch.setattr(jobs, "AGENT_WAIT_S", 0.05)
    stuck = _AgentStartingClient(10**6, busy)
    with pytest.raises(RegtuneError, match="No available agent"):
        jobs._submit(stuck, "http://127.0.0.1:8265", entrypoint="x")


class _DroppingClient:
    """Ray's Jobs client whose connection drops once the job is submitted: the
    first ``answers`` status requests are answered RUNNING, then every request
    raises ``error`` (a dropped network cannot be made cheaply here, so it is
    replayed at the client boundary, as Ray's client raises it)."""

    def __init__(self, error: Exception, answers: int) -> None:
        self.error, self.answers = error, answers
        self.submitted: list[str] = []

    def submit_job(self, *, submission_id: str, **kwargs: Any) -> str:
        self.submitted.append(submission_id)
        return submission_id

    def get_job_status(self, job_id: str) -> str:
        if self.answers > 0:
            self.answers -= 1
            return "RUNNING"
        raise self.error

    def get_job_logs(self, job_id: str) -> str:
        raise self.error

    def get_job_info(self, job_id: str) -> Any:
        raise self.error

    async def tail_job_logs(self, job_id: str) -> Any:
        yield "epoch 1\n"
        await asyncio.sleep(3600)  # a live stream with nothing more to say


def _dropping(monkeypatch: pytest.MonkeyPatch, error: Exception, answers: int) -> _DroppingClient:

    client = _DroppingClient(error, answers)
    monkeypatch.setattr(jobs, "_connect", lambda address: client)
    monkeypatch.setattr(jobs, "POLL_INTERVAL_S", 0.01)
    for var in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return client


@pytest.mark.parametrize(
    "error",
    [
        # Ray's client raises the builtin while connecting, requests' own on later calls.
        ConnectionError("connection reset by peer"),
        requests.exceptions.ConnectionError("Max retries exceeded"),
    ],
    ids=["builtin", "requests"],
)
@pytest.mark.parametrize("follow", [True, False], ids=["follow", "no-follow"])
def test_contact_lost_after_submission_names_the_job_and_how_to_reach_it(
    monkeypatch: pytest.MonkeyPatch, error: Exception, follow: bool
) -> None:
    address = "http://127.0.0.1:8265"
    client = _dropping(monkeypatch, error, answers=1 if follow else 0)
    with pytest.raises(JobContactLost) as info:
        submit_sweep("quickstart", address=address, follow=follow, log=lambda line: None)
    [job_id] = client.submitted
    assert info.value.job_id == job_id
    assert str(info.value) == LOST_CONTACT.format(job_id=job_id, reason=error, address=address)
    assert f"ray job logs --follow {job_id} --address {address}" in str(info.value)
    # Not the "start a cluster" advice of a cluster that never answered.
    assert "ray start" not in str(info.value)


def test_submit_exits_3_when_contact_is_lost_after_submission(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from regtune.platform.cli import app

    client = _dropping(monkeypatch, ConnectionError("connection reset by peer"), answers=1)
    address = "http://127.0.0.1:8265"
    result = CliRunner().invoke(app, ["submit", "quickstart", "--address", address])
    assert result.exit_code == LOST_CONTACT_EXIT == 3, (result.output, result.exception)
    [job_id] = client.submitted
    assert f"submitted job {job_id}" in result.stdout
    assert f"job {job_id} was submitted and may still be running" in result.stderr
    assert f"ray job stop {job_id} --address {address}" in result.stderr
    assert "Traceback" not in result.stderr


# --- against the module's cluster -------------------------------------------


def test_token_auth_is_on(cluster: Cluster) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{cluster.address}/api/version", timeout=10)
    info.value.close()
    assert info.value.code == 401
    headers = auth_headers(cluster.address, environ={})
    assert headers["authorization"].startswith("Bearer ")
    request = urllib.request.Request(f"{cluster.address}/api/version", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert "ray_version" in json.loads(answer.read())


def test_job_succeeds_with_streamed_logs_env_and_working_dir(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Submitted from inside a running event loop (as from a notebook or an
    async app): the logs are polled there too, in the order they were printed,
    while the job runs (it prints its second line only once the first reached
    ``log``)."""
    working_dir = tmp_path / "wd"
    working_dir.mkdir()
    (working_dir / "marker.txt").write_text("uploaded-marker\n")
    seen_first = tmp_path / "seen-first"
    lines: list[str] = []
    code = (
        "import os, time; print(open('marker.txt').read().strip(), os.environ['PROBE'], "
        "flush=True)\n"
        "deadline = time.monotonic() + 60\n"
        f"while not os.path.exists({str(seen_first)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        f"print('second' if os.path.exists({str(seen_first)!r}) else 'first line never seen')"
    )

    def log(line: str) -> None:
        lines.append(line)
        if line == "uploaded-marker 42":
            seen_first.touch()

    async def submit_from_a_coroutine() -> Any:
        return run_job(
            _python(code),
            address=cluster.address,
            name="probe-ok",
            runtime_env={"working_dir": str(working_dir), "env_vars": {"PROBE": "42"}},
            log=log,
        )

    outcome = asyncio.run(submit_from_a_coroutine())
    assert (outcome.status, outcome.exit_code) == ("SUCCEEDED", 0)
    assert outcome.job_id.startswith("regtune-probe-ok-")
    assert "uploaded-marker 42" in lines
    assert lines.index("uploaded-marker 42") < lines.index("second")
    # "second" (not "first line never seen"): the first line reached log while the job ran.
    assert seen_first.exists()
    assert lines[-1].startswith(f"job {outcome.job_id} SUCCEEDED")
    info = _client(cluster).get_job_info(outcome.job_id)
    assert info.metadata[METADATA_KEY] == "probe-ok"


def test_failing_job_exits_1(cluster: Cluster) -> None:
    lines: list[str] = []
    code = "import sys; print('about to fail', flush=True); sys.exit(3)"
    outcome = run_job(_python(code), address=cluster.address, name="probe-fail", log=lines.append)
    assert (outcome.status, outcome.exit_code) == ("FAILED", 1)
    assert "about to fail" in lines
    assert outcome.message is not None
    assert "exit code 3" in outcome.message


def test_bad_spec_never_reaches_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("name: never-submitted\ndataset: digits\nbudget: {samples: 0}\n")
    with pytest.raises(SpecError):
        submit_sweep(str(bad_spec), address=cluster.address)
    names = [(job.metadata or {}).get(METADATA_KEY) for job in _client(cluster).list_jobs()]
    assert "never-submitted" not in names


def test_auth_failure_says_how_to_pass_the_token(cluster: Cluster) -> None:
    """A client with token auth explicitly disabled sends no token (a fresh
    process: Ray caches the auth mode per process)."""
    code = (
        "from regtune.errors import RegtuneError\n"
        "from regtune.platform.jobs import run_job\n"
        "try:\n"
        f"    run_job('true', address={cluster.address!r}, name='no-token')\n"
        "except RegtuneError as exc:\n"
        "    print('ERROR', exc)\n"
    )
    env = {**cluster.env, AUTH_MODE_ENV: "disabled"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert "ERROR the Ray cluster at" in done.stdout, done.stdout + done.stderr
    assert "token authentication failed" in done.stdout
    assert "RAY_AUTH_MODE=token" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif(not SWEEP_AVAILABLE, reason="regtune sweep not yet available")
def test_submit_sweep_and_two_ray_job_submits_of_one_preset_all_succeed(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Three sweeps of the quickstart spec on the cluster at once (one
    cluster, and the three jobs' start-ups overlap): :func:`submit_sweep`,
    and `ray job submit [--working-dir DIR] -- regtune sweep SPEC [--address
    auto]` twice: once as a file in an uploaded working dir with `--address
    auto`, once as the preset's name without it (the driver finds the job's
    cluster itself)."""
    # `ray job submit`, twice, with no --name: each job names its experiment.
    _quickstart_copy(tmp_path / "wd")
    storage = tmp_path / "runs"
    options = ["--storage", str(storage)]
    for override in SWEEP_OVERRIDES:
        options += ["--set", override]
    submit = [RAY, "job", "submit", "--address", cluster.address]
    in_wd = ["regtune", "sweep", "my-sweep.yaml"]
    commands = [
        [*submit, "--working-dir", str(tmp_path / "wd"), "--", *in_wd, "--address", "auto"],
        [*submit, "--", "regtune", "sweep", "quickstart"],
    ]
    runs = [
        subprocess.Popen(
            [*command, *options],
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command in commands
    ]
    try:
        # submit_sweep, meanwhile, to its own storage.
        spec = _quickstart_copy(tmp_path / "specs")
        own_storage = tmp_path / "api-runs"
        lines: list[str] = []
        outcome = submit_sweep(
            str(spec), address=cluster.address, overrides=SWEEP_OVERRIDES,
            storage=str(own_storage), log=lines.append,
        )  # fmt: skip
        outputs = [run.communicate(timeout=240)[0] for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.communicate()

    text = "\n".join(lines)
    assert (outcome.status, outcome.exit_code) == ("SUCCEEDED", 0), text
    # No --name: the experiment got a new name by the sweep naming rule, and
    # the job id, the dashboard metadata and the results folder all carry it.
    info = _client(cluster).get_job_info(outcome.job_id)
    name = info.metadata[METADATA_KEY]
    assert re.fullmatch(GENERATED_NAME, name), name
    assert outcome.job_id.startswith(f"regtune-{name}-")
    assert info.metadata == {METADATA_KEY: name, SPEC_METADATA_KEY: "my-sweep.yaml"}
    assert [p.name for p in own_storage.iterdir()] == [name]
    assert "my-sweep.yaml" in info.entrypoint

    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-3000:]
        assert "succeeded" in output, output[-3000:]
    # Two experiments, each named by the rule: the second did not collide.
    names = sorted(p.name for p in storage.iterdir())
    assert len(names) == 2, names
    assert all(re.fullmatch(GENERATED_NAME, n) for n in names), names


def test_a_resume_reads_its_spec_as_one_that_ran() -> None:
    """`regtune sweep --resume` reads its spec in stored mode on the cluster, so a rule
    added since for new input must not refuse the resume here first (a 2-epoch asha
    with grace 2, which earlier versions ran)."""
    closed = _closed_address()
    old_rule = ["budget.max_epochs=2"]
    with pytest.raises(SpecError, match="would stop no trial early"):
        submit_sweep("quickstart", address=closed, overrides=old_rule, name="qs-old")
    # Past the spec check: only the closed cluster stops it.
    with pytest.raises(RegtuneError, match="no Ray Jobs API answers") as info:
        submit_sweep("quickstart", address=closed, overrides=old_rule, name="qs-old", resume=True)
    assert not isinstance(info.value, SpecError)


def test_a_resume_with_its_data_in_the_working_dir_reads_its_spec_as_one_that_ran(
    tmp_path: Path,
) -> None:
    """The uploaded data file is checked by loading the spec again: that load read the
    spec as new input, so a resume refused there what the first check let through."""
    wd = tmp_path / "wd"
    spec = _csv_spec(wd, "data/ok.csv")
    (wd / "data").mkdir()
    rows = "x1,x2,y\n" + "".join(f"{i % 7},{i % 3},{i % 2}\n" for i in range(60))
    (wd / "data" / "ok.csv").write_text(rows)
    old_rule = ["budget.max_epochs=2"]
    args: dict[str, Any] = {"spec": str(spec), "working_dir": wd, "overrides": old_rule}
    with pytest.raises(SpecError, match="would stop no trial early"):
        submit_sweep(address=_closed_address(), name="csv-old", **args)
    _passes_the_checks(name="csv-old", resume=True, **args)
