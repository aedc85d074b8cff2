"""Ray processes left behind by a killed regtune driver, found and stopped.

When a driver that started a local Ray dies by SIGKILL, most of that Ray
dies with it (Ray starts the GCS, raylet, dashboard, monitor and log monitor
with the kernel's parent-death signal, and workers follow their raylet). Two
do not: the raylet's children ``ray::DashboardAgent`` and
``ray::RuntimeEnvAgent`` notice the raylet is gone at once, but then wait
60 s on a report to the (dead) GCS before they exit.

So regtune keeps a record of each local Ray it starts: after ``ray.init``
returns, :func:`record_local_session` writes one small JSON file (the
driver's PID and start time, Ray's session folder, and the PID and start
time of every process the driver started) to ``$REGTUNE_STATE_DIR/
ray-sessions/`` (default ``~/.regtune/ray-sessions/``, mode 700). A normal
exit shuts Ray down and removes the record. The next regtune command that
starts or joins Ray calls :func:`reap_dead_sessions`, which for every record
whose driver is gone stops (SIGTERM, then SIGKILL after
:data:`TERM_GRACE_S`) exactly the processes of that session that still run,
and removes the record:

- a recorded process, if its PID still runs *and* started at the recorded
  time (a reused PID is someone else's and is never touched);
- a Ray process started later for that session (a worker): one whose name
  is Ray's (``ray::...``, ``raylet``, ``gcs_server``) or whose command line
  runs Ray's package, *and* which holds a file open under that session's
  folder (its logs; the folder name is unique to the session).

Records of live drivers, and every Ray that regtune did not start (a
``ray start --head`` cluster, another tool's ``ray.init``), are never
touched. ``ray stop`` is never used: it stops every Ray on the machine.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SESSIONS_SUBDIR",
    "STATE_ENV",
    "TERM_GRACE_S",
    "StoppedSession",
    "reap_dead_sessions",
    "record_local_session",
    "sessions_dir",
]

#: Environment variable naming regtune's state folder (default ``~/.regtune``).
STATE_ENV = "REGTUNE_STATE_DIR"
DEFAULT_STATE_DIR = "~/.regtune"
#: Folder under the state folder holding one record per live local Ray.
SESSIONS_SUBDIR = "ray-sessions"
#: Seconds a leftover process gets to exit after SIGTERM before SIGKILL.
TERM_GRACE_S = 1.0
#: Two start times closer than this are the same process start (psutil
#: derives them from clock ticks, 10 ms apart; a reused PID starts later).
SAME_START_S = 0.05
RECORD_FORMAT = 1
#: Process names Ray gives its own programs.
RAY_PROCESS_NAMES = frozenset({"raylet", "gcs_server"})

STOPPED = "stopped {n} Ray processes left by killed regtune driver {pid} (Ray session {session})"
BAD_RECORD = "ignoring and removing unreadable regtune session record {path}: {reason}"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoppedSession:
    """A dead driver's local Ray whose leftover processes were stopped."""

    session_dir: str
    driver_pid: int
    #: ``(pid, name)`` of each process stopped.
    stopped: tuple[tuple[int, str], ...]


def sessions_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$REGTUNE_STATE_DIR/ray-sessions`` (default ``~/.regtune/ray-sessions``)."""
    environ = os.environ if environ is None else environ
    root = environ.get(STATE_ENV) or DEFAULT_STATE_DIR
    return Path(root).expanduser() / SESSIONS_SUBDIR


def _psutil() -> Any:
    # psutil ships inside Ray's wheel (ray/thirdparty_files); importing Ray
    # first puts it on the path.
    import ray  # noqa: F401

    return importlib.import_module("psutil")


def record_local_session(session_dir: str, environ: Mapping[str, str] | None = None) -> Path:
    """Record the local Ray this process just started (call right after ``ray.init``).

    ``session_dir``: Ray's session folder (``ray.init(...).address_info
    ["session_dir"]``). The record is removed when this process exits
    normally, after ``ray.shutdown()``.
    """
    psutil = _psutil()
    me = psutil.Process()
    processes = []
    for child in _session_processes(psutil, me, session_dir):
        with contextlib.suppress(psutil.Error):
            processes.append({**_start_of(psutil, child), "name": child.name()})
    record = {
        "format": RECORD_FORMAT,
        "driver": _start_of(psutil, me),
        "session_dir": session_dir,
        "processes": processes,
    }
    folder = sessions_dir(environ)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{Path(session_dir).name}.json"
    # Written whole or not at all: a reader never sees half a record.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle)
    os.replace(tmp, path)
    atexit.register(_forget, path)
    return path


def _session_processes(psutil: Any, driver: Any, session_dir: str) -> list[Any]:
    """The driver's children that run this Ray session (their command lines
    name its folder), and everything below them; other children of the
    driver (anything else it started) are not part of the session."""
    name = Path(session_dir).name
    out: dict[int, Any] = {}
    for child in driver.children():
        with contextlib.suppress(psutil.Error):
            if any(name in arg for arg in child.cmdline()):
                for proc in [child, *child.children(recursive=True)]:
                    out[proc.pid] = proc
    return list(out.values())


def _forget(path: Path) -> None:
    """At a normal exit: stop this process's Ray, then drop its record."""
    import ray

    with contextlib.suppress(Exception):
        ray.shutdown()
    path.unlink(missing_ok=True)


def reap_dead_sessions(environ: Mapping[str, str] | None = None) -> list[StoppedSession]:
    """Stop what is left of every recorded local Ray whose driver is gone.

    Returns one entry per dead driver's session that still had processes.
    Cheap when there is nothing recorded (no Ray import).
    """
    folder = sessions_dir(environ)
    paths = sorted(folder.glob("session_*.json")) if folder.is_dir() else []
    if not paths:
        return []
    psutil = _psutil()
    stopped: list[StoppedSession] = []
    for path in paths:
        try:
            record = json.loads(path.read_text())
            driver = record["driver"]
            session_dir = str(record["session_dir"])
            recorded = [_identity(p) for p in record["processes"]]
            driver_pid, driver_start, driver_since_boot = _identity(driver)
        except FileNotFoundError:
            continue  # another regtune command reaped it meanwhile
        except KeyError as exc:
            logger.warning(BAD_RECORD.format(path=path, reason=f"missing key {exc}"))
            path.unlink(missing_ok=True)
            continue
        except (OSError, ValueError, TypeError) as exc:
            logger.warning(BAD_RECORD.format(path=path, reason=exc))
            path.unlink(missing_ok=True)
            continue
        if _same_process(psutil, driver_pid, driver_start, driver_since_boot) is not None:
            continue  # its driver still runs: its Ray is in use
        leftovers = _leftovers(psutil, recorded, session_dir)
        if leftovers:
            names = tuple((p.pid, _name(psutil, p)) for p in leftovers)
            _stop(psutil, leftovers)
            logger.info(STOPPED.format(n=len(names), pid=driver_pid, session=session_dir))
            stopped.append(
                StoppedSession(session_dir=session_dir, driver_pid=driver_pid, stopped=names)
            )
        path.unlink(missing_ok=True)
    return stopped


def _start_of(psutil: Any, proc: Any) -> dict[str, Any]:
    """What identifies ``proc`` later: its PID and when it started, both as a
    wall-clock time and as seconds after boot (which a clock change does not move)."""
    return {
        "pid": proc.pid,
        "create_time": proc.create_time(),
        "since_boot": proc.create_time() - psutil.boot_time(),
    }


def _identity(entry: Mapping[str, Any]) -> tuple[int, float, float | None]:
    """``(pid, create_time, since_boot)`` of a recorded process (``since_boot``:
    None in records written before it was kept)."""
    since_boot = entry.get("since_boot")
    return (
        int(entry["pid"]),
        float(entry["create_time"]),
        None if since_boot is None else float(since_boot),
    )


def _same_process(psutil: Any, pid: int, create_time: float, since_boot: float | None) -> Any:
    """The running process with this PID and start time, or ``None``.

    Compared as seconds after boot when the record has them: a wall-clock
    start time moves with the system clock (psutil adds the boot time, which
    an NTP step or a restored VM snapshot shifts), and a live driver must
    never look gone (its Ray would be stopped under it).
    """
    try:
        proc = psutil.Process(pid)
        if since_boot is not None:
            started = proc.create_time() - psutil.boot_time()
            return proc if abs(started - since_boot) <= SAME_START_S else None
        if abs(proc.create_time() - create_time) <= SAME_START_S:
            return proc
    except psutil.Error:
        pass
    return None


def _leftovers(
    psutil: Any, recorded: Iterable[tuple[int, float, float | None]], session_dir: str
) -> list[Any]:
    found = {}
    for pid, create_time, since_boot in recorded:
        proc = _same_process(psutil, pid, create_time, since_boot)
        if proc is not None:
            found[proc.pid] = proc
    prefix = session_dir.rstrip("/") + "/"
    ray_package = str(Path(_ray_package_dir())) + "/"
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid in found or proc.pid == me:
            continue
        try:
            if not _is_ray_process(proc, ray_package):
                continue
            if any(f.path.startswith(prefix) for f in proc.open_files()):
                found[proc.pid] = proc
        except psutil.Error:
            continue
    return list(found.values())


def _is_ray_process(proc: Any, ray_package: str) -> bool:
    name = proc.name()
    if name.startswith("ray::") or name in RAY_PROCESS_NAMES:
        return True
    return any(ray_package in arg for arg in proc.cmdline())


def _ray_package_dir() -> str:
    import ray

    return str(Path(ray.__file__).parent)


def _name(psutil: Any, proc: Any) -> str:
    try:
        return str(proc.name())
    except psutil.Error:
        return "?"


def _stop(psutil: Any, procs: list[Any]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=TERM_GRACE_S)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=TERM_GRACE_S)
