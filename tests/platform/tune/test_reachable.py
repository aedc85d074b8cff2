"""Refusing a Ray address where nothing listens, before ``ray.init`` would
retry it for minutes (``regtune.platform.tune.reachable``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from regtune.errors import SpecError
from regtune.platform.tune.reachable import check_reachable, host_port

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("head-node:10001", ("head-node", 10001)),
        ("[::1]:6379", ("::1", 6379)),
        ("auto", None),
        ("local", None),
        ("ray://127.0.0.1:10001", None),
        ("http://127.0.0.1:8265", None),
        ("127.0.0.1", None),
        ("127.0.0.1:", None),
        ("127.0.0.1:0", None),
        ("127.0.0.1:99999", None),
        (":6379", None),
    ],
)
def test_host_port_reads_only_host_and_port_addresses(
    address: str, parsed: tuple[str, int] | None
) -> None:
    assert host_port(address) == parsed


def test_a_listening_address_passes_and_a_free_port_is_refused_by_name(listening: int) -> None:
    check_reachable(f"127.0.0.1:{listening}")
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(SpecError) as info:
        check_reachable(f"127.0.0.1:{port}", wait_s=1.0)
    assert 0.5 <= time.monotonic() - started < 5.0  # tried again, then refused
    message = str(info.value)
    assert f"no Ray cluster answers at 127.0.0.1:{port} (Connection refused for 1 s)" in message
    assert f"`ray status --address 127.0.0.1:{port}`" in message
    assert "leave the address out to start a local Ray" in message
    # Left to Ray: what is not host:port.
    for other in ("ray://127.0.0.1:1", "http://127.0.0.1:1"):
        check_reachable(other)


def test_an_address_that_starts_listening_while_tried_passes() -> None:
    """A cluster a script has just begun may take seconds to listen."""
    port = _free_port()
    sock = socket.socket()

    def listen_later() -> None:
        time.sleep(1.0)
        sock.bind(("127.0.0.1", port))
        sock.listen()

    late = threading.Thread(target=listen_later)
    late.start()
    try:
        check_reachable(f"127.0.0.1:{port}", wait_s=15.0)
    finally:
        late.join()
        sock.close()


def test_an_unknown_host_is_refused_without_waiting() -> None:
    started = time.monotonic()
    with pytest.raises(SpecError, match=r"no Ray cluster answers at no-such-host\.invalid:6379"):
        check_reachable("no-such-host.invalid:6379", wait_s=30.0)
    assert time.monotonic() - started < 10.0


def test_auto_is_checked_where_ray_would_find_the_cluster(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, listening: int
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    check_reachable("auto")  # neither names one: Ray decides (and says so itself)
    stale = f"127.0.0.1:{_free_port()}"
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(stale)
    with pytest.raises(SpecError, match="address file of the last `ray start`") as info:
        check_reachable("auto", wait_s=0.0)
    assert f"no Ray cluster answers at {stale} (found by address 'auto'" in str(info.value)
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{listening}")
    check_reachable("auto")
    monkeypatch.setenv("RAY_ADDRESS", stale)
    with pytest.raises(SpecError, match=r"found by address 'auto' in \$RAY_ADDRESS"):
        check_reachable("auto", wait_s=0.0)


def test_a_sweep_given_an_address_where_nothing_listens_exits_2_at_once(tmp_path: Path) -> None:
    port = _free_port()
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "regtune"), "sweep", "quickstart", "--address", f"127.0.0.1:{port}",
         "--storage", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [x for x in (done.stdout + done.stderr).splitlines() if x.startswith("error:")]
    assert errors == [
        f"error: no Ray cluster answers at 127.0.0.1:{port} (Connection refused for 20 s); "
        "start one "
        f"with `ray start --head`, check the address with `ray status --address "
        f"127.0.0.1:{port}`, or leave the address out to start a local Ray"
    ]
    assert "Traceback" not in done.stderr
    # It said it was joining that cluster, not starting a Ray of its own.
    assert f"joining the Ray cluster at 127.0.0.1:{port} ..." in done.stdout + done.stderr
    assert "starting Ray" not in done.stdout + done.stderr
    assert time.monotonic() - started < 60
    # No experiment was begun in the storage.
    results = tmp_path / "results"
    assert not results.exists() or not any(results.iterdir())
