"""One warm process that forks each benchmark's ``--smoke-test`` (used by test_benchmarks_smoke).

Started once per pytest worker (``python -m tests.smoke_zygote`` in the
repository root), it imports
the heavy libraries every benchmark needs (torch, torch._dynamo, Ray Tune,
pandas, scikit-learn: about 5 CPU-seconds a process) and then, per request,
forks a child that runs ``python -m benchmarks.<name> --smoke-test`` as
``-m`` does (:func:`runpy.run_module` as ``__main__``), with its own
environment, working directory, and stdout/stderr files. The child is a new
process each time: nothing a benchmark does reaches the next one. Nothing
runs in this process after the imports (no Ray, no torch operation), so a
fork starts from a clean state.

It also keeps, on request, the one local Ray (one CPU, loopback, token
authentication: :func:`~regtune.platform.tune.runtime.start_local_ray`) that
the benchmarks' ``start_smoke_ray`` joins when ``$REGTUNE_SMOKE_RAY_ADDRESS``
names it, so a pytest worker starts one Ray for all its smoke runs rather
than one each. That Ray runs in a forked child ("holder") that stops it when
this process goes away (its command pipe closes), even if it is killed.

Protocol: one JSON object a line on stdin, replies one a line on stdout.

- ``{"op": "run", "module", "args", "env", "cwd", "stdout", "stderr"}``:
  replies ``{"pid": N}`` once forked (the child leads its own process group),
  then ``{"rc": CODE}`` when it exited (negative: killed by that signal).
- ``{"op": "ray"}``: replies ``{"address": "127.0.0.1:PORT"}`` (started if needed).
- ``{"op": "ray_check"}``: waits until the shared Ray is idle again; replies
  ``{"ok": true}``, or ``{"ok": false, ...what was left}`` and stops that Ray
  (the next ``ray`` starts a fresh one).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import sys
import threading
import time
import traceback
from typing import Any

__all__ = ["AUTH_MODE_ENV", "IDLE_WAIT_S", "PRELOAD", "PRESTART_ENV", "main"]

#: Ray's authentication mode variable (``token`` or ``disabled``).
AUTH_MODE_ENV = "RAY_AUTH_MODE"

#: Imported before any fork: what the benchmarks (and their in-process
#: contenders) import anyway. torch._dynamo comes with torch.optim's first step.
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "sklearn",
    "torch",
    "torch._dynamo",
    "ray",
    "ray.tune",
)
#: Ray's switch (read by the raylet it starts) for prestarting workers for its first driver.
PRESTART_ENV = "RAY_prestart_worker_first_driver"
#: How long the shared Ray may take to free its CPU and forget named actors
#: after a benchmark's driver exited (the driver's actors are killed by then).
IDLE_WAIT_S = 60.0


class _Holder:
    """The forked child that keeps the shared smoke Ray up."""

    def __init__(self, close_fds: list[int]) -> None:
        to_holder_r, self.to_holder = os.pipe()
        self.from_holder, from_holder_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the holder: it keeps none of the zygote's pipes open
            for fd in (self.to_holder, self.from_holder, *close_fds):
                os.close(fd)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            _hold(to_holder_r, from_holder_w)  # never returns
        os.close(to_holder_r)
        os.close(from_holder_w)
        self._replies = os.fdopen(self.from_holder, "r")
        self.address = str(self.ask(None)["address"])

    def ask(self, command: str | None) -> dict[str, Any]:
        """Send ``command`` (None: only read) and return the holder's reply."""
        if command is not None:
            os.write(self.to_holder, (command + "\n").encode())
        line = self._replies.readline()
        if not line:
            raise RuntimeError("the smoke Ray holder exited")
        return dict(json.loads(line))

    def stop(self) -> None:
        """Close its command pipe (it stops Ray and exits) and reap it."""
        os.close(self.to_holder)
        self._replies.close()
        os.waitpid(self.pid, 0)


def _hold(commands_fd: int, replies_fd: int) -> None:
    """Start the one-CPU loopback Ray, report its address, answer checks until EOF."""
    code = 0
    try:
        # A worker prestarted for the holder's own job could serve no benchmark.
        os.environ[PRESTART_ENV] = "0"
        import ray

        from benchmarks.common import SMOKE_RAY_CPUS
        from regtune.platform.tune.runtime import start_local_ray

        start_local_ray(num_cpus=SMOKE_RAY_CPUS)
        replies = os.fdopen(replies_fd, "w", buffering=1)
        replies.write(json.dumps({"address": ray.get_runtime_context().gcs_address}) + "\n")
        with os.fdopen(commands_fd, "r") as commands:
            for line in commands:
                if line.strip() == "check":
                    replies.write(json.dumps(_idle_report()) + "\n")
        ray.shutdown()
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


def _idle_report() -> dict[str, Any]:
    """Whether every CPU is free and no named actor is left (waits up to IDLE_WAIT_S)."""
    import ray

    deadline = time.monotonic() + IDLE_WAIT_S
    while True:
        named = ray.util.list_named_actors(all_namespaces=True)
        total = ray.cluster_resources().get("CPU", 0.0)
        free = ray.available_resources().get("CPU", 0.0)
        if not named and free >= total:
            return {"ok": True}
        if time.monotonic() > deadline:
            return {"ok": False, "named_actors": named, "cpu_free": free, "cpu_total": total}
        time.sleep(0.25)


def _run_child(request: dict[str, Any], close_fds: list[int]) -> None:
    """In the forked child: run the module as ``python -m`` would, then exit."""
    code = 1
    try:
        os.setpgid(0, 0)
        for fd in close_fds:
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        sys.argv = [request["module"], *request["args"]]
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        # What the interpreter does on exit: wait for non-daemon threads, run atexit.
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # exiting anyway
                stream.flush()
        os._exit(code)


def main() -> None:
    """Serve requests from stdin until it closes."""
    # Replies go to the original stdout; anything the imports print, to stderr.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    # Ray reads its authentication mode once, when ray._raylet is imported, and
    # a driver joining an address by name needs it said. Token mode is what a
    # local Ray started here turns on anyway (unless the variable says otherwise).
    os.environ.setdefault(AUTH_MODE_ENV, "token")
    for name in PRELOAD:
        importlib.import_module(name)
    holder: _Holder | None = None

    def reply(payload: dict[str, Any]) -> None:
        replies.write(json.dumps(payload) + "\n")

    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "ray":
            if holder is None:
                holder = _Holder([replies.fileno()])
            reply({"address": holder.address})
        elif op == "ray_check":
            report = holder.ask("check") if holder is not None else {"ok": True}
            if not report["ok"] and holder is not None:
                holder.stop()
                holder = None
            reply(report)
        elif op == "run":
            keep = [replies.fileno()] + ([holder.to_holder, holder.from_holder] if holder else [])
            pid = os.fork()
            if pid == 0:
                _run_child(request, keep)  # never returns
            reply({"pid": pid})
            _, status = os.waitpid(pid, 0)
            reply({"rc": os.waitstatus_to_exitcode(status)})
        else:
            reply({"error": f"unknown op {op!r}"})
    if holder is not None:
        holder.stop()


if __name__ == "__main__":
    main()
