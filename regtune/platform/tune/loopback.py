"""Keeping a local Ray on loopback: which addresses count, and the one switch that does it.

Ray 2.60 binds its gRPC servers (GCS, raylet, object manager, every core
worker) and its Prometheus metrics ports to loopback only when the node's
address is exactly ``127.0.0.1``; for any other node address they listen on
all interfaces (``::`` / ``0.0.0.0``). Ray's upstream fix (pull request
59852) binds them to the node address instead; it is not in 2.60.

``ray.init(_node_ip_address="127.0.0.1")`` is not enough on Linux: Ray
replaces a loopback node address with the machine's outward address
(``services.resolve_ip_for_localhost``) unless multi-node clusters are
switched off, which is Ray's own switch ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``
(read once, when Ray is imported, into ``ray_constants.ENABLE_RAY_CLUSTER``).
:func:`single_node_start` turns it off for the duration of one ``ray.init``
that starts a new local node, so that node's address stays ``127.0.0.1`` and
every Ray process started for it listens on loopback only. It is restored
afterwards: once a node is up, Ray reads the node address from the node.

A local ``ray start --head`` kept on loopback is started the same way, with
the switch in its environment (see ``docs/security.md``)::

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start --head --node-ip-address 127.0.0.1 ...
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "ALL_INTERFACES_ON_EXTERNAL_NODE",
    "LOCAL_HOST",
    "SINGLE_NODE_ENV",
    "is_all_interfaces",
    "is_loopback",
    "single_node_start",
]

#: The address a local Ray is kept on.
LOCAL_HOST = "127.0.0.1"
#: Ray's switch for multi-node clusters; ``0`` keeps a loopback node address.
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def is_loopback(host: str) -> bool:
    """Whether a listening address is reachable from this machine only.

    ``127.0.0.0/8``, ``::1`` and IPv4-mapped loopback (``::ffff:127.0.0.1``,
    how a dual-stack gRPC server reports a loopback bind) are; ``0.0.0.0``,
    ``::`` and every other address are not. An address with a zone
    (``fe80::1%eth0``) is judged without it.
    """
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def is_all_interfaces(host: str) -> bool:
    """Whether a listening address is every interface (``0.0.0.0``, ``::``)."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_unspecified
    except ValueError:
        return False


@contextmanager
def single_node_start() -> Iterator[None]:
    """Within it, ``ray.init`` keeps ``127.0.0.1`` where Ray would replace it.

    A ``ray.init`` that starts a node keeps ``127.0.0.1`` as the node's
    address; one that joins ``127.0.0.1:PORT`` (given, or found by
    ``auto``) connects there, instead of to the machine's outward address,
    where a loopback-only cluster does not listen. Other addresses are not
    changed.

    Only this process's view changes (Ray's module constant, not the
    environment), so processes it starts later, such as ``ray start`` or a
    job's driver, are not affected.
    """
    from regtune.platform.tune.ray_private import loopback_addresses_kept

    with loopback_addresses_kept():
        yield


#: What still listens on all interfaces in Ray 2.60 when a node's address is
#: *not* loopback (a cluster started or joined on an external address), by
#: process kind: ``(protocol, guard)``. Everything else listens on the node
#: address or on loopback. A local Ray started by regtune has none of these.
ALL_INTERFACES_ON_EXTERNAL_NODE: dict[str, tuple[str, str]] = {
    "gcs_server": ("gRPC", "token"),
    "raylet": ("gRPC (node manager, object manager)", "token"),
    "core_worker": ("gRPC (every driver, worker and actor process)", "token"),
    "dashboard_agent": ("gRPC", "token"),
    "dashboard_agent_metrics": ("HTTP, Prometheus metrics (read-only)", "none"),
    "monitor_metrics": ("HTTP, Prometheus metrics of the autoscaler (read-only)", "none"),
    "dashboard_metrics": ("HTTP, Prometheus metrics of the dashboard (read-only)", "none"),
}
