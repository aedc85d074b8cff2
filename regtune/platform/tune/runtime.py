"""Starting or joining Ray for a sweep: the one place that calls ``ray.init``."""

from __future__ import annotations

import logging

__all__ = ["LOCAL_HOST", "ensure_ray"]

LOCAL_HOST = "127.0.0.1"


def ensure_ray(address: str | None, *, dashboard: bool = False) -> None:
    """Join ``address``, or start a lean local Ray on loopback (no-op when Ray is up)."""
    import ray

    if ray.is_initialized():
        return
    if address is not None:
        ray.init(address=address, log_to_driver=False)
        return
    ray.init(
        # Loopback only: a local sweep exposes nothing to the network.
        _node_ip_address=LOCAL_HOST,
        include_dashboard=dashboard,
        dashboard_host=LOCAL_HOST,
        # Trial workers' stdout would interleave with the progress display;
        # errors still reach the driver through Tune's error files.
        log_to_driver=False,
        configure_logging=True,
        logging_level=logging.WARNING,
    )
