"""Whether a Ray cluster answers at an address, asked before ``ray.init`` joins it.

``ray.init(address="host:port")`` with nothing listening there does not fail:
it retries the cluster's GCS for minutes (measured: still waiting after 120 s
for ``regtune serve --address 127.0.0.1:6999``), and so does
``address="auto"`` when the last ``ray start`` cluster is gone but its
address file is not. A TCP connection tells a refused or unreachable address
within :data:`REFUSED_WAIT_S`, so the user gets one error line naming the
address instead of a hang. A refused connection is tried again until then:
a cluster that a script has just begun with ``ray start`` may take some
seconds to listen. An unknown host fails at once. Anything else
(``ray://`` clients, an address Ray refuses by itself) is left to Ray.
"""

from __future__ import annotations

import socket
import time

from regtune.errors import SpecError

__all__ = ["NO_CLUSTER", "PROBE_TIMEOUT_S", "REFUSED_WAIT_S", "check_reachable", "host_port"]

#: Seconds one TCP connection may take (a refused one returns at once).
PROBE_TIMEOUT_S = 5.0
#: Seconds a refused address is tried again (every :data:`RETRY_S`) before it is
#: refused: long enough for a cluster just begun by ``ray start`` to listen.
REFUSED_WAIT_S = 20.0
RETRY_S = 0.5
NO_CLUSTER = (
    "no Ray cluster answers at {target}{found} ({reason}); start one with "
    "`ray start --head`, check the address with `ray status --address {target}`, "
    "or leave the address out to start a local Ray"
)


def host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``host:port`` or ``[v6 host]:port`` address; None
    for anything else (``auto``, ``ray://...``, ``http://...``, no port)."""
    if "://" in address or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def check_reachable(
    address: str, *, timeout_s: float = PROBE_TIMEOUT_S, wait_s: float = REFUSED_WAIT_S
) -> None:
    """Refuse ``address`` when no Ray cluster listens there within ``wait_s``
    (see the module docstring).

    ``"auto"`` is checked at what Ray would join (``$RAY_ADDRESS``, else the
    last ``ray start``'s address file); when neither names one, Ray decides.

    Raises:
        SpecError: the connection was refused, timed out or the host is
            unknown; the message names the address, where ``auto`` found it,
            and what to do.
    """
    target, found = address, ""
    if address == "auto":
        from regtune.platform.tune.ray_private import auto_address

        resolved = auto_address()
        if resolved is None:
            return
        target, source = resolved
        found = f" (found by address 'auto' in {source})"
    parsed = host_port(target)
    if parsed is None:
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            socket.create_connection(parsed, timeout=timeout_s).close()
            return
        except ConnectionRefusedError as exc:
            left = deadline - time.monotonic()
            if left > 0:  # the last try comes at the deadline
                time.sleep(min(RETRY_S, left))
                continue
            reason = f"{exc.strerror or 'connection refused'} for {wait_s:g} s"
        except OSError as exc:  # unknown host, unreachable network, time-out: no waiting
            reason = exc.strerror or type(exc).__name__
            if isinstance(exc, TimeoutError) or reason == "timed out":
                reason = f"no answer within {timeout_s:g} s"
        raise SpecError(NO_CLUSTER.format(target=target, found=found, reason=reason)) from None
