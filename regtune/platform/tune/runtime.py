"""Starting or joining Ray for a sweep: the one place that calls ``ray.init``.

A local Ray (no ``address``) is started so that it exposes nothing to the
network and leaves nothing behind:

- every socket it opens listens on loopback only (see
  :mod:`regtune.platform.tune.loopback` and ``docs/security.md``);
- token authentication stays on, and the token file Ray would create is
  created by regtune with mode 600 (:mod:`regtune.platform.tune.token_file`);
- it is recorded, so that if this driver is killed the next regtune command
  stops what is left of it (:mod:`regtune.platform.tune.local_sessions`);
- Ray's and Tune's banners are hidden unless :func:`set_verbose` asked for
  them (:mod:`regtune.platform.tune.banners`).

Joining a cluster (``address``) follows that cluster's own address: a
driver's sockets listen where the cluster's node does. A loopback address
(``127.0.0.1:6379``, or ``auto`` finding a local cluster) is kept as given,
so a cluster kept on loopback can be joined.
"""

from __future__ import annotations

import os
from typing import Any, cast

from regtune.errors import SpecError
from regtune.platform.tune.banners import (
    apply_verbosity,
    filter_ray_messages,
    is_verbose,
    ray_log_level,
    set_verbose,
)
from regtune.platform.tune.local_sessions import reap_dead_sessions, record_local_session
from regtune.platform.tune.loopback import LOCAL_HOST, single_node_start
from regtune.platform.tune.reachable import check_reachable
from regtune.platform.tune.token_file import ensure_private_token

__all__ = [
    "LOCAL_HOST",
    "TRIAL_TOO_BIG_MSG",
    "TRIAL_TOO_BIG_ON_CLUSTER_MSG",
    "check_trial_fits_machine",
    "cluster_to_join",
    "ensure_ray",
    "is_verbose",
    "set_verbose",
    "start_local_ray",
    "trial_fits_cluster",
]


#: Set by Ray's job supervisor in the environment of a submitted job's driver.
JOB_DRIVER_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"

TRIAL_TOO_BIG_MSG = (
    "resources.{key}={value:g}: one trial asks for more {what} than this machine has "
    "({have:g}), so no trial could ever start; {fix}, or join a cluster that has them "
    "(--address). No trial was started"
)
TRIAL_TOO_BIG_ON_CLUSTER_MSG = (
    "resources.{key}={value:g}: no node of the cluster has that many {what} now (the "
    "largest has {have:g}); trials wait until one does (an autoscaling cluster may add one)"
)
#: What each ``resources`` key counts, as Ray names it and in words.
_RESOURCE_KEYS = (("cpu", "CPU", "CPUs"), ("gpu", "GPU", "GPUs"))


def check_trial_fits_machine(cpu: float, gpu: float) -> None:
    """Refuse a trial that asks for more CPUs or GPUs than the local Ray
    regtune started has (what Ray found on this machine): Ray would keep it
    pending for ever. Ray must be up; call it before the sweep starts a trial.

    Raises:
        SpecError: ``resources.cpu`` or ``resources.gpu`` is above what there is.
    """
    import ray

    have = ray.cluster_resources()
    for key, ray_name, what in _RESOURCE_KEYS:
        value, there = (cpu if key == "cpu" else gpu), float(have.get(ray_name, 0.0))
        if value > there:
            fix = (
                f"lower resources.{key} to at most {there:g}"
                if there > 0
                else f"set resources.{key} to 0"
            )
            raise SpecError(
                TRIAL_TOO_BIG_MSG.format(key=key, value=value, what=what, have=there, fix=fix)
            )


def trial_fits_cluster(cpu: float, gpu: float) -> list[str]:
    """Warnings (one per key) for a trial that asks for more CPUs or GPUs
    than any live node of the joined cluster has now; Ray must be up. An
    autoscaling cluster may still add a node that fits, so this only warns."""
    import ray

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    warnings = []
    for key, ray_name, what in _RESOURCE_KEYS:
        value = cpu if key == "cpu" else gpu
        largest = max((float(node.get(ray_name, 0.0)) for node in nodes), default=0.0)
        if value > largest:
            message = TRIAL_TOO_BIG_ON_CLUSTER_MSG.format(
                key=key, value=value, what=what, have=largest
            )
            warnings.append(message)
    return warnings


def cluster_to_join(address: str | None) -> str | None:
    """The address :func:`ensure_ray` joins for ``address``, or None where it
    starts a local Ray (``None`` or ``local``).

    ``None`` inside a Ray job's driver (``ray job submit -- regtune sweep X``:
    the job's supervisor sets ``$RAY_JOB_CONFIG_JSON_ENV_VAR`` and
    ``$RAY_ADDRESS``) is ``auto``, the job's cluster. ``$RAY_ADDRESS`` alone
    is not enough: users export it for ``ray job submit``.
    """
    if address is None and os.environ.get(JOB_DRIVER_ENV) and os.environ.get("RAY_ADDRESS"):
        return "auto"
    return None if address in (None, "local") else address


def ensure_ray(
    address: str | None,
    *,
    dashboard: bool = False,
    verbose: bool | None = None,
) -> None:
    """Join ``address``, or start a lean local Ray on loopback (no-op when Ray is up).

    Args:
        address: an existing cluster (``auto``, ``host:port``, ``ray://...``);
            ``None`` or ``local``: start a local Ray (:func:`start_local_ray`),
            except that ``None`` inside a Ray job's driver (``ray job submit``
            sets ``$RAY_JOB_CONFIG_JSON_ENV_VAR`` and ``$RAY_ADDRESS``) joins
            the job's cluster.
        dashboard: start the dashboard with a local Ray (on 127.0.0.1).
        verbose: show Ray's and Tune's own banners; default: what
            :func:`set_verbose` last set (off).

    Either way, first stops what is left of local Rays whose regtune driver
    was killed (:func:`~regtune.platform.tune.local_sessions.reap_dead_sessions`).

    Raises:
        SpecError: nothing answers at ``address`` (or at what ``auto`` finds),
            :func:`~regtune.platform.tune.reachable.check_reachable`.
    """
    import ray

    if ray.is_initialized():
        return
    apply_verbosity(verbose)
    filter_ray_messages()
    reap_dead_sessions()
    address = cluster_to_join(address)
    if address is not None:
        # ray.init would retry an address where nothing listens for minutes.
        check_reachable(address)
        # Ray rewrites a loopback address (given, or found by "auto") to the
        # machine's outward one, where a loopback-only cluster does not listen.
        with single_node_start():
            ray.init(
                address=address,
                log_to_driver=False,
                configure_logging=True,
                logging_level=ray_log_level(verbose),
            )
        return
    start_local_ray(dashboard=dashboard, verbose=verbose)


def start_local_ray(
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    dashboard: bool = False,
    verbose: bool | None = None,
) -> str:
    """Start a local Ray on loopback with token authentication; return its session folder.

    ``num_cpus``/``num_gpus``: what the node declares (default: what Ray
    detects). Every socket of every process it starts listens on loopback;
    the dashboard, when asked for, on 127.0.0.1 too. The start is recorded
    for :func:`~regtune.platform.tune.local_sessions.reap_dead_sessions`.

    Always a new Ray of its own (``address="local"``): a bare ``ray.init()``
    would instead join what ``$RAY_ADDRESS`` names (users export the
    dashboard's ``http://`` address there for ``ray job submit``; Ray then
    refuses to start) or the last cluster ``ray start`` began on this
    machine (joined without the loopback and token guarantees above, or
    refused when ``num_cpus`` is given).
    """
    import ray

    apply_verbosity(verbose)
    filter_ray_messages()
    if ensure_private_token() is not None:
        from regtune.platform.tune.ray_private import reset_auth_token_cache

        # Ray's loader may have looked (and found nothing) before the file existed.
        reset_auth_token_cache()
    with single_node_start():
        context = ray.init(
            address="local",
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            _node_ip_address=LOCAL_HOST,
            include_dashboard=dashboard,
            dashboard_host=LOCAL_HOST,
            # Trial workers' stdout would interleave with the progress display;
            # errors still reach the driver through Tune's error files.
            log_to_driver=False,
            configure_logging=True,
            logging_level=ray_log_level(verbose),
        )
    # ray.init returns a RayContext (typed as its base class): address_info
    # holds the node's facts, its session folder among them.
    session_dir = str(cast(Any, context).address_info["session_dir"])
    record_local_session(session_dir)
    return session_dir
