"""Run a call that might hang (a read of /dev/zero, a FIFO) so that a hang fails
the test instead of stopping the suite."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def within(call: Callable[[], Any], timeout: float, what: str = "the read did not return") -> Any:
    """``call()`` on a daemon thread: its value, or its exception raised here; the
    test fails with ``what`` if it has not returned in ``timeout`` seconds."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), what
    if "error" in box:
        raise box["error"]
    return box.get("value")
