"""The parts of starting Ray that need no Ray: addresses, the token file,
banners, and the records of local sessions (with real processes)."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regtune.platform.tune import banners
from regtune.platform.tune.banners import (
    TOKEN_NOTICE_LOGGER,
    TUNE_OUTPUT_ENV,
    apply_verbosity,
    is_verbose,
    ray_log_level,
    set_verbose,
)
from regtune.platform.tune.local_sessions import (
    BAD_RECORD,
    STATE_ENV,
    reap_dead_sessions,
    sessions_dir,
)
from regtune.platform.tune.loopback import is_all_interfaces, is_loopback
from regtune.platform.tune.token_file import (
    OTHERS_CAN_READ,
    default_token_path,
    ensure_private_token,
)

# --------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("host", "loopback", "everywhere"),
    [
        ("127.0.0.1", True, False),
        ("127.0.0.2", True, False),
        ("::1", True, False),
        ("::ffff:127.0.0.1", True, False),
        ("0.0.0.0", False, True),
        ("::", False, True),
        ("192.0.2.2", False, False),
        ("::ffff:192.0.2.2", False, False),
        ("fe80::1%eth0", False, False),
        ("localhost", False, False),  # a name, not an address a socket reports
    ],
)
def test_loopback_and_all_interfaces(host: str, loopback: bool, everywhere: bool) -> None:
    assert is_loopback(host) is loopback
    assert is_all_interfaces(host) is everywhere


# --------------------------------------------------------------- token file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_file_is_created_owner_only(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    old_umask = os.umask(0o022)  # the usual umask, under which Ray writes 644
    try:
        path = ensure_private_token(env)
    finally:
        os.umask(old_umask)
    assert path == default_token_path(env) == tmp_path / ".ray" / "auth_token"
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    token = path.read_text()
    assert len(token) == 64 and set(token) <= set("0123456789abcdef")
    # A second start keeps the same token.
    assert ensure_private_token(env) is None
    assert path.read_text() == token


def test_existing_token_file_is_kept_and_a_readable_one_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"HOME": str(tmp_path)}
    path = tmp_path / ".ray" / "auth_token"
    path.parent.mkdir()
    path.write_text("f" * 64)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert ensure_private_token(env) is None
    assert path.read_text() == "f" * 64
    assert _mode(path) == 0o644
    assert caplog.messages == [OTHERS_CAN_READ.format(path=path, mode=0o644)]
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        assert ensure_private_token(env) is None
    assert caplog.messages == []


@pytest.mark.parametrize(
    "extra",
    [{"RAY_AUTH_MODE": "disabled"}, {"RAY_AUTH_TOKEN": "abc"}, {"RAY_AUTH_TOKEN_PATH": "/x/t"}],
)
def test_no_token_file_when_the_token_comes_from_elsewhere(
    tmp_path: Path, extra: dict[str, str]
) -> None:
    assert ensure_private_token({"HOME": str(tmp_path), **extra}) is None
    assert not (tmp_path / ".ray").exists()


# --------------------------------------------------------------- banners


@pytest.fixture
def quiet_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restore the verbosity switch, its filter and Tune's variable afterwards."""
    monkeypatch.delenv(TUNE_OUTPUT_ENV, raising=False)
    before = dict(banners._state)
    # Earlier tests in this process may have run a quiet sweep: start clean.
    banners._state["set_tune_env"] = False
    # A quiet ray.init earlier in this process leaves Ray's root logger at
    # WARNING (configure_logging), which would swallow Serve's INFO here.
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    ray_logger.setLevel(logging.INFO)
    yield
    ray_logger.setLevel(level)
    banners._state.update(before)
    logging.getLogger(TOKEN_NOTICE_LOGGER).removeFilter(banners._TOKEN_FILTER)


def _logged(message: str, name: str = TOKEN_NOTICE_LOGGER) -> list[str]:
    """What a handler on logger ``name`` (Ray's token logger) receives when it logs ``message``."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger(name)
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning(message)
    finally:
        logger.removeHandler(handler)
    return seen


ENABLED = (
    "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out."
)
DISABLED = "Token authentication is disabled for this Ray cluster. Anyone with network access..."


def test_quiet_hides_only_the_token_enabled_notice_and_tunes_box(quiet_state: None) -> None:
    set_verbose(False)
    assert not is_verbose()
    assert _logged(ENABLED) == []
    assert _logged(DISABLED) == [DISABLED]  # a security warning is never hidden
    assert os.environ[TUNE_OUTPUT_ENV] == "0"
    assert ray_log_level() == logging.WARNING

    set_verbose(True)
    assert is_verbose()
    assert _logged(ENABLED) == [ENABLED]
    assert TUNE_OUTPUT_ENV not in os.environ
    assert ray_log_level() == logging.INFO
    # An explicit argument wins over the switch.
    assert ray_log_level(False) == logging.WARNING


def test_quiet_hides_tunes_missing_result_file_notice_only(quiet_state: None) -> None:
    """Tune's result loggers warn on every PBT exploit that a result.json they
    would restore is absent (regtune stores results in Parquet instead)."""
    import ray.tune.logger.logger as tune_logger

    assert tune_logger.logger.name == banners.RESULT_LOGGER  # Tune's own logger
    notice = "Remote file not found: /runs/pbt/trial_b48ea_00000/result.json"
    other = "Error downloading /runs/pbt/trial_b48ea_00000/result.json"
    set_verbose(False)
    assert _logged(notice, banners.RESULT_LOGGER) == []
    assert _logged(other, banners.RESULT_LOGGER) == [other]
    set_verbose(True)
    assert _logged(notice, banners.RESULT_LOGGER) == [notice]


def test_quiet_hides_tunes_failed_to_fetch_metrics_warning_only(quiet_state: None) -> None:
    """The result grid warns that it could not read a never-started trial's
    result file into a data frame regtune does not use (a time-limited sweep)."""
    import ray.tune.analysis.experiment_analysis as analysis

    assert analysis.logger.name == banners.ANALYSIS_LOGGER  # Tune's own logger
    notice = (
        "Failed to fetch metrics for 1 trial(s):\n- ResourceTrainable_8bd03_00009: "
        "FileNotFoundError('Could not fetch metrics for ResourceTrainable_8bd03_00009')"
    )
    other = "Could not load the experiment state."
    set_verbose(False)
    assert _logged(notice, banners.ANALYSIS_LOGGER) == []
    assert _logged(other, banners.ANALYSIS_LOGGER) == [other]
    set_verbose(True)
    assert _logged(notice, banners.ANALYSIS_LOGGER) == [notice]


def test_quiet_keeps_a_tune_output_choice_the_user_made(
    quiet_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TUNE_OUTPUT_ENV, "1")
    apply_verbosity(False)
    assert os.environ[TUNE_OUTPUT_ENV] == "1"
    apply_verbosity(True)
    assert os.environ[TUNE_OUTPUT_ENV] == "1"


def test_quiet_drops_serves_info_and_its_shutdown_notice_only(
    quiet_state: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through Ray's own printer of pushed errors and Serve's own logger."""
    import ray._private.worker as ray_worker

    # Ray skips a line it printed moments ago: each call prints another one
    # (numbers masked): two different messages.
    others = [
        "A worker died or was killed while executing a task by an unexpected system error.",
        "Actor restarted on another node after its own node went away.",
    ]
    notice = (
        f"{banners.SERVE_SHUTDOWN_NOTICE}. There are infinite retries remaining, so the task "
        "will be retried. Error: The actor is dead because it was killed by `ray.kill`."
    )
    serve_logger = logging.getLogger(banners.SERVE_LOGGER)

    def shown(other: str) -> tuple[str, list[str]]:
        seen: list[str] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record.getMessage())

        handler = Keep()
        serve_logger.addHandler(handler)
        try:
            serve_logger.info("Started Serve in namespace 'serve'.")
            serve_logger.warning("Controller failed to shut down within 30s.")
        finally:
            serve_logger.removeHandler(handler)
        ray_worker.print_to_stdstream(
            {"lines": [notice, other], "pid": "raylet", "is_err": False}, ignore_prefix=False
        )
        return capsys.readouterr().out, seen

    banners.filter_ray_messages()  # as ensure_ray does before Ray starts
    try:
        set_verbose(False)
        out, logged = shown(others[0])
        assert banners.SERVE_SHUTDOWN_NOTICE not in out and others[0] in out
        assert logged == ["Controller failed to shut down within 30s."]
        set_verbose(True)
        out, logged = shown(others[1])
        assert banners.SERVE_SHUTDOWN_NOTICE in out and others[1] in out
        assert len(logged) == 2
        apply_verbosity(False)  # an explicit value wins over the switch
        out, _ = shown(others[0] + " Again, later.")
        assert banners.SERVE_SHUTDOWN_NOTICE not in out
    finally:
        serve_logger.removeFilter(banners._SERVE_FILTER)


def test_the_private_ray_wrapper_imports_no_ray_tune() -> None:
    """A Serve driver imports it (authentication, banners): Ray Tune is 1.3 s it never
    needs; the verbosity switch imports no Ray at all (``serve --write-config``)."""
    code = (
        "import sys; from regtune.platform.tune import ray_private, banners; "
        "banners.apply_verbosity(False); print('ray' in sys.modules); "
        "banners.filter_ray_messages(); print('ray.tune' in sys.modules); "
        "from regtune.platform.tune.ray_private import DONE; print(DONE)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "done"]


#: Ray modules that are private or internal (what Ray may move between releases).
PRIVATE_RAY = ("ray._", "ray.tune.result")


def _private_ray_imports(path: Path) -> list[str]:
    """``path``'s imports of private Ray modules (``import`` and ``from ... import``,
    at any depth: also inside functions)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "ray" and (
                name.startswith(PRIVATE_RAY) or any(p.startswith("_") for p in parts[1:])
            ):
                found.append(f"{path.name}:{node.lineno}: {name}")
                break
    return found


def test_private_ray_apis_are_used_only_in_the_wrapper() -> None:
    """Every use of Ray's private or internal modules goes through ray_private, the
    one file to fix when Ray moves them (its docstring lists each)."""
    root = Path(__file__).resolve().parents[3] / "regtune"
    wrapper = root / "platform" / "tune" / "ray_private.py"
    outside = [
        hit
        for path in sorted(root.rglob("*.py"))
        if path != wrapper
        for hit in _private_ray_imports(path)
    ]
    assert outside == []
    assert _private_ray_imports(wrapper)  # the rule sees what the wrapper imports


# --------------------------------------------------------------- session records


def _psutil() -> Any:
    import importlib

    import ray  # noqa: F401

    return importlib.import_module("psutil")


def _write_record(
    folder: Path, name: str, driver: tuple[int, float], processes: list[tuple[int, float]]
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"session_{name}.json"
    path.write_text(
        json.dumps(
            {
                "format": 1,
                "driver": {"pid": driver[0], "create_time": driver[1]},
                "session_dir": f"/nonexistent/session_{name}",
                "processes": [
                    {"pid": pid, "create_time": created, "name": "sleep"}
                    for pid, created in processes
                ],
            }
        )
    )
    return path


def test_reap_stops_a_dead_drivers_processes_and_nothing_else(tmp_path: Path) -> None:
    psutil = _psutil()
    env = {STATE_ENV: str(tmp_path)}
    folder = sessions_dir(env)
    dead = subprocess.Popen(["true"])
    dead.wait()
    dead_driver = (dead.pid, time.time() - 5)
    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(4)]
    try:
        ids = [(p.pid, psutil.Process(p.pid).create_time()) for p in sleepers]
        # A dead driver: its recorded process is stopped, the record removed.
        orphaned = _write_record(folder, "dead", dead_driver, [ids[0]])
        # A dead driver whose recorded PID now belongs to a process started later.
        reused = _write_record(folder, "reused", dead_driver, [(ids[1][0], ids[1][1] - 30)])
        # A live driver (sleeper 2, same start time): nothing of it is touched.
        live = _write_record(folder, "live", ids[2], [ids[3]])
        corrupt = folder / "session_corrupt.json"
        corrupt.write_text("{not json")

        stopped = reap_dead_sessions(env)

        assert [(s.session_dir, s.stopped) for s in stopped] == [
            ("/nonexistent/session_dead", ((ids[0][0], "sleep"),))
        ]
        assert sleepers[0].wait(timeout=10) is not None
        assert [p.poll() for p in sleepers[1:]] == [None, None, None]
        assert not orphaned.exists() and not reused.exists() and not corrupt.exists()
        assert live.exists()
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait()


def test_a_clock_step_never_makes_a_live_driver_look_gone(tmp_path: Path) -> None:
    """Wall-clock start times move when the system clock is stepped (NTP, a restored
    VM snapshot: psutil adds the boot time, which moves with it). Seen in a test run:
    every live session's Ray was stopped under its driver. Records keep the start as
    seconds after boot too, and that is what is compared."""
    psutil = _psutil()
    env = {STATE_ENV: str(tmp_path)}
    folder = sessions_dir(env)
    folder.mkdir(parents=True)
    driver, worker = (subprocess.Popen(["sleep", "60"]) for _ in range(2))
    try:
        procs = [psutil.Process(p.pid) for p in (driver, worker)]
        entries = [
            {
                "pid": proc.pid,
                "create_time": proc.create_time() - 3.0,  # as recorded before a 3 s step
                "since_boot": proc.create_time() - psutil.boot_time(),
            }
            for proc in procs
        ]
        path = folder / "session_live.json"
        record = {
            "format": 1,
            "driver": entries[0],
            "session_dir": "/nonexistent/session_live",
            "processes": [{**entries[1], "name": "sleep"}],
        }
        path.write_text(json.dumps(record))

        assert reap_dead_sessions(env) == []
        assert driver.poll() is None and worker.poll() is None and path.exists()
    finally:
        for proc in (driver, worker):
            proc.kill()
            proc.wait()


def test_bad_record_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {STATE_ENV: str(tmp_path)}
    folder = sessions_dir(env)
    folder.mkdir(parents=True)
    path = folder / "session_x.json"
    path.write_text(json.dumps({"format": 1, "driver": {}}))
    with caplog.at_level(logging.WARNING):
        assert reap_dead_sessions(env) == []
    assert caplog.messages == [BAD_RECORD.format(path=path, reason="missing key 'session_dir'")]
    assert not path.exists()


def test_importing_the_runtime_and_reaping_nothing_import_no_ray(tmp_path: Path) -> None:
    """`regtune train` and other commands without Ray stay light."""
    code = (
        "import sys\n"
        "import regtune.platform.tune.runtime\n"
        "from regtune.platform.tune.local_sessions import reap_dead_sessions\n"
        f"assert reap_dead_sessions({{'{STATE_ENV}': sys.argv[1]}}) == []\n"
        "print('ray' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
