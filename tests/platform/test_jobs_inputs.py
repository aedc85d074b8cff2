"""``regtune submit``'s own inputs, checked on this machine (no Ray cluster).

Who gets the local Ray token (a listener on a loopback address logs the
requests it receives), what a bad ``--env`` shows, how often one submission
reads and validates its spec, and the token file's mode in the cluster docs.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import regtune.search_spaces.load as spec_load
from regtune.errors import RegtuneError, SpecError
from regtune.platform import jobs
from regtune.platform.cli import app
from regtune.platform.jobs import (
    AUTH_MODE_ENV,
    BAD_ADDRESS,
    BAD_ENV_VAR,
    DEFAULT_ADDRESS,
    ENV_VAR_WITHOUT_VALUE,
    auth_headers,
    parse_env_vars,
    resolve_address,
    submit_sweep,
)
from regtune.platform.tune.ray_private import reset_auth_token_cache
from regtune.search_spaces import preset_path

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "local-ray-token-0123456789abcdef"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ANSWER = b"HTTP/1.1 500 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Listener:
    """An HTTP server on ``host`` that records the head of each request it
    gets and answers 500 (so Ray's client gives up at once)."""

    def __init__(self, host: str) -> None:
        self.requests: list[str] = []
        self._sock = socket.socket()
        self._sock.bind((host, 0))
        self._sock.listen()
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                self.requests.append(data.decode(errors="replace"))
                with contextlib.suppress(OSError):
                    conn.sendall(ANSWER)

    def authorizations(self) -> list[str]:
        return [
            line.partition(":")[2].strip()
            for request in self.requests
            for line in request.split("\r\n")
            if line.lower().startswith("authorization:")
        ]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@contextlib.contextmanager
def _listening(host: str) -> Iterator[_Listener]:
    try:
        listener = _Listener(host)
    except OSError as exc:  # pragma: no cover - a machine without 127.0.0.0/8
        pytest.skip(f"cannot listen on {host}: {exc}")
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture
def local_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """RAY_AUTH_TOKEN set, RAY_AUTH_MODE unset: regtune decides who gets the token."""
    monkeypatch.delenv(AUTH_MODE_ENV, raising=False)
    for var in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    reset_auth_token_cache()
    yield TOKEN
    monkeypatch.undo()
    reset_auth_token_cache()


def _submit(address: str) -> None:
    """``regtune submit quickstart --address ADDRESS --no-follow``; the listener's
    500 (or no listener) ends it with a RegtuneError after the request."""
    with pytest.raises(RegtuneError):
        submit_sweep("quickstart", address=address, follow=False, log=lambda _: None)


# --- the token ----------------------------------------------------------------


def test_an_address_two_url_parsers_read_apart_gets_no_token(local_token: str) -> None:
    """urllib read ``http://127.0.0.2:P\\@127.0.0.1:P``'s host as 127.0.0.1 (this
    machine) while requests connected to 127.0.0.2, sending it the local token:
    such an address is now refused before anything is sent."""
    with _listening("127.0.0.2") as remote:
        port = remote.port
        for address in (
            rf"http://127.0.0.2:{port}\@127.0.0.1:{port}",
            rf"http://127.0.0.2:{port}\\@localhost:{port}",
            f"http://127.0.0.2:{port}@127.0.0.1:{port}",
            f"http://user:{TOKEN}@127.0.0.2:{port}",
            f"http://127.0.0.2:{port}#@127.0.0.1:{port}",
            f"http://127.0.0.2:{port}?@127.0.0.1:{port}",
            f"http://127.0.0.2:{port} @127.0.0.1:{port}",
            f"http://127.0.0.2:{port}\t@127.0.0.1:{port}",
        ):
            with pytest.raises(SpecError) as info:
                submit_sweep("quickstart", address=address, follow=False, log=lambda _: None)
            message = str(info.value)
            assert message.startswith("--address must be the Ray dashboard's HTTP address"), message
            assert "no user@, backslash, whitespace, query or fragment" in message
            assert TOKEN not in message  # a password in the address is not echoed
            # Nor does any other door send it the token.
            assert auth_headers(address, environ={}) == {}, address
        assert remote.requests == []


def test_the_local_token_goes_to_this_machine_only(local_token: str) -> None:
    with _listening("127.0.0.1") as local:
        _submit(f"http://127.0.0.1:{local.port}")
        _submit(f"http://localhost:{local.port}/")
    assert local.authorizations() == [f"Bearer {local_token}"] * 2
    # 127.0.0.2 is not one of the names regtune takes for this machine: remote.
    with _listening("127.0.0.2") as remote:
        _submit(f"http://127.0.0.2:{remote.port}")
    assert remote.requests, "the listener got no request"
    assert remote.authorizations() == []
    assert auth_headers("http://[::1]:8265", environ={}) == {"authorization": f"Bearer {TOKEN}"}
    assert auth_headers("http://LOCALHOST:8265/ray", environ={}) != {}


def test_bad_addresses_name_what_is_allowed() -> None:
    for bad in (
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
        "http://[::1:8265",  # urllib raised ValueError: a traceback
        "http://127.0.0.1:8265\n",
        "http://127.0.0.1:8265/a b",
        "http://127.0.0.1:8265/%2e%2e",
    ):
        with pytest.raises(SpecError) as info:
            resolve_address(bad, environ={})
        assert str(info.value) == BAD_ADDRESS.format(example=DEFAULT_ADDRESS, address=bad)
    # A password is hidden; the user name and the host are kept.
    with pytest.raises(SpecError) as info:
        resolve_address(f"https://me:{SECRET}@ray.example.com", environ={})
    assert SECRET not in str(info.value)
    assert "'https://me:***@ray.example.com'" in str(info.value)
    # Plain addresses (a path for a proxy included) are kept as given.
    for good in ("http://[::1]:8265", "HTTPS://ray.example.com", "http://10.0.0.5:8265/ray/"):
        assert resolve_address(good, environ={}) == good.rstrip("/")


# --- --env ---------------------------------------------------------------------


def test_a_bad_env_key_is_named_without_its_value() -> None:
    with pytest.raises(SpecError) as info:
        parse_env_vars(["OK=1", f"AWS-SECRET-KEY={SECRET}"])
    assert str(info.value) == BAD_ENV_VAR.format(key="AWS-SECRET-KEY")
    assert SECRET not in str(info.value)
    # A long key is cut.
    long_key = "K-" + "x" * 5000
    with pytest.raises(SpecError) as info:
        parse_env_vars([f"{long_key}={SECRET}"])
    assert SECRET not in str(info.value)
    assert len(str(info.value)) < 500
    assert "(5002 characters)" in str(info.value)
    # No '=': the text may be the value alone; it is counted, not shown.
    with pytest.raises(SpecError) as info:
        parse_env_vars(["A=1", SECRET])
    assert str(info.value) == ENV_VAR_WITHOUT_VALUE.format(number=2, length=len(SECRET))


def test_submit_cli_never_prints_an_env_value() -> None:
    result = CliRunner().invoke(
        app, ["submit", "quickstart", "--no-follow", "--env", f"AWS-SECRET-KEY={SECRET}"]
    )
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output
    assert "--env 'AWS-SECRET-KEY'=..." in output
    assert SECRET not in result.output and SECRET[:8] not in result.output


# --- one read, one validation --------------------------------------------------


def _csv_spec(folder: Path, extra: dict[str, Any] | None = None) -> Path:
    raw = yaml.safe_load(preset_path("quickstart").read_text())
    raw["dataset"] = {"name": "csv", "path": "data/ok.csv", "label": "y"}
    raw.update(extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "csv.yaml"
    spec.write_text(yaml.safe_dump(raw))
    return spec


def _closed_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_one_submission_reads_its_spec_twice_and_validates_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It read the YAML three times and validated the whole spec twice (once
    more only to check the uploaded data file)."""
    wd = tmp_path / "wd"
    spec = _csv_spec(wd)
    (wd / "data").mkdir()
    (wd / "data" / "ok.csv").write_text("x1,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    reads: list[object] = []
    loads: list[object] = []
    read_source, load_spec = spec_load._read_source, jobs.load_spec

    def counted_read(source: Any) -> Any:
        reads.append(source)
        return read_source(source)

    def counted_load(*args: Any, **kwargs: Any) -> Any:
        loads.append(args)
        return load_spec(*args, **kwargs)

    monkeypatch.setattr(spec_load, "_read_source", counted_read)
    monkeypatch.setattr(jobs, "load_spec", counted_load)
    for overrides in ([], ["dataset.path=data/ok.csv"]):
        reads.clear()
        loads.clear()
        with pytest.raises(RegtuneError) as caught:
            submit_sweep(
                str(spec),
                address=_closed_address(),
                working_dir=wd,
                overrides=overrides,
                log=lambda _: None,
            )
        assert not isinstance(caught.value, SpecError), caught.value
        # data_path_as_written and load_spec: one read each; one validation.
        assert (len(reads), len(loads)) == (2, 1), overrides
    # The one validation still checks the uploaded file, as the job finds it.
    (wd / "data" / "ok.csv").unlink()
    with pytest.raises(SpecError, match=r"line \d+: dataset\.path: .*file not found"):
        submit_sweep(str(spec), address=_closed_address(), working_dir=wd)


def test_the_data_file_and_the_rest_of_the_spec_are_reported_at_once(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    spec = _csv_spec(wd, {"penalties": {"l3": 0.1}})
    with pytest.raises(SpecError) as info:
        submit_sweep(str(spec), address=_closed_address(), working_dir=wd)
    message = str(info.value)
    assert message.startswith(f"invalid sweep spec {spec}:"), message
    assert "l3" in message
    assert re.search(r"dataset\.path: .*file not found", message), message


# --- the token file's mode in the cluster docs ----------------------------------


@pytest.mark.parametrize("doc", ["docs/cluster.md", "cluster.yaml"])
def test_each_generated_token_is_made_private(doc: str) -> None:
    """Ray writes ~/.ray/auth_token readable by everyone (0644), and cluster.yaml
    copies ~/.ray to every node: each `ray get-auth-token --generate` the docs
    give is followed by `chmod 600 ~/.ray/auth_token` on the same line."""
    lines = [
        line
        for line in (ROOT / doc).read_text(encoding="utf-8").splitlines()
        if "get-auth-token --generate" in line
    ]
    assert lines, doc
    for line in lines:
        assert "chmod 600 ~/.ray/auth_token" in line, line
