"""The one module that touches Ray's private or internal APIs.

Ray moves these between releases (checked against Ray 2.60), so every use
goes through a small function here and nowhere else: when Ray changes, this
is the file to fix. What is used, and why:

- ``ray.tune.result`` names (``DONE``, ``DEBUG_METRICS``): the keys Tune
  reads in a result.
- ``ray._raylet.AuthenticationTokenLoader``: Ray's own token loader, the one
  its clients use, to send the local token to a local Jobs API.
- ``ray.autoscaler._private.util`` ``prepare_config``/``validate_config``:
  the checks ``ray up`` runs on a cluster YAML before it contacts a cloud.
- A Tune trial's checkpoint bookkeeping (``Trial.run_metadata.
  checkpoint_manager``, ``Trial.storage``): read and corrected on
  ``--resume``, because Tune restores each trial from the checkpoint its last
  experiment snapshot recorded, not from the newest one on disk (see
  :mod:`regtune.platform.tune.checkpoint_keeper`).
- ``Tuner._local_tuner``: a restored Tuner's callbacks, which Tune otherwise
  takes from the pickle written when the experiment started.
- ``ray.train._internal.storage.StorageContext``: the storage context a
  fused sweep's stub trials share (:mod:`regtune.platform.tune.fused_driver`).
- ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``: turned off while a
  driver starts or joins a loopback node, so ``ray.init`` keeps 127.0.0.1
  (:func:`regtune.platform.tune.loopback.single_node_start`).
- ``ray.serve.context._get_global_client``: Serve's details (its replicas'
  own ports under direct ingress), which Serve's public API does not expose
  (:func:`regtune.serve.app.replica_urls`).
- ``ray._private.services.find_bootstrap_address``: the cluster address the
  last ``ray start`` on this machine left in Ray's temp folder, which
  ``ray.init(address="auto")`` joins (:mod:`regtune.platform.tune.reachable`
  checks that something answers there first).
- ``ray._private.worker.print_to_stdstream``: how a driver prints the errors
  Ray pushes to it ("(raylet) ..."); wrapped so that regtune can drop the
  ones that are noise to its users (:mod:`regtune.platform.tune.banners`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.tune.result import DEBUG_METRICS, DONE

__all__ = [
    "DEBUG_METRICS",
    "DONE",
    "TrialStorage",
    "auth_token_header",
    "auto_address",
    "drop_pushed_errors",
    "experiment_storage",
    "has_auth_token",
    "loopback_addresses_kept",
    "ray_up_checks",
    "registered_checkpoints",
    "reset_auth_token_cache",
    "serve_details",
    "set_registered_checkpoints",
    "set_restored_callbacks",
    "trial_storage",
]


#: Names read from ``ray.tune.result`` when first asked for: importing it
#: imports all of Ray Tune (about 1.3 s), which a Serve driver never needs.
_TUNE_RESULT_NAMES = frozenset({"DEBUG_METRICS", "DONE"})


def __getattr__(name: str) -> Any:
    """``DONE`` and ``DEBUG_METRICS``, from ``ray.tune.result`` (PEP 562)."""
    if name in _TUNE_RESULT_NAMES:
        import ray.tune.result as tune_result

        return getattr(tune_result, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------- authentication


def _token_loader() -> Any:
    # Ray's stub omits it; it is the loader Ray's own clients use.
    from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

    return AuthenticationTokenLoader.instance()


def auth_token_header() -> dict[str, str]:
    """``{"authorization": "Bearer <token>"}`` with the token Ray finds on this
    machine (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``),
    whatever ``RAY_AUTH_MODE`` says; empty when there is none."""
    header = _token_loader().get_token_for_http_header(ignore_auth_mode=True)
    return {str(key): str(value) for key, value in header.items()}


def has_auth_token() -> bool:
    """Whether Ray finds a token on this machine (ignoring ``RAY_AUTH_MODE``)."""
    return bool(_token_loader().has_token(ignore_auth_mode=True))


def reset_auth_token_cache() -> None:
    """Forget the token Ray's loader cached (after a token file was created)."""
    _token_loader().reset_cache()


# ---------------------------------------------------------------- pushed errors

_PRINT_FILTERS: list[Callable[[str], bool]] = []


def drop_pushed_errors(drop: Callable[[str], bool]) -> None:
    """Keep a driver from printing the errors Ray pushes to it for which
    ``drop(line)`` is true (asked at each message; every other line prints as
    Ray prints it). Installed once per process; idempotent per ``drop``."""
    import ray._private.worker as ray_worker

    if drop not in _PRINT_FILTERS:
        _PRINT_FILTERS.append(drop)
    original = ray_worker.print_to_stdstream
    if getattr(original, "_regtune_filtered", False):
        return

    def filtered(data: dict[str, Any], ignore_prefix: bool) -> None:
        lines = [ln for ln in data.get("lines", []) if not any(f(ln) for f in _PRINT_FILTERS)]
        if lines:
            original({**data, "lines": lines}, ignore_prefix)

    filtered._regtune_filtered = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = filtered


# ---------------------------------------------------------------- cluster YAML


def ray_up_checks(config: dict[str, Any]) -> dict[str, Any]:
    """Run the checks ``ray up`` runs before contacting a cloud; return the
    prepared config (provider defaults merged). Raises what Ray raises
    (``jsonschema.ValidationError``, ``ValueError``) for a bad config."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared: dict[str, Any] = prepare_config(config)
    validate_config(prepared)
    return prepared


# ---------------------------------------------------------------- trial checkpoints


@dataclass(frozen=True)
class TrialStorage:
    """Where a trial's files live: a pyarrow filesystem and paths on it
    (``trial_path`` is empty until Tune has named the trial's folder)."""

    filesystem: Any
    experiment_path: str
    trial_path: str


def trial_storage(trial: Any) -> TrialStorage:
    """The filesystem, experiment path and trial path of a Tune ``Trial``."""
    storage = trial.storage
    return TrialStorage(
        filesystem=storage.storage_filesystem,
        experiment_path=str(storage.experiment_fs_path),
        trial_path=str(storage.trial_fs_path) if storage.trial_dir_name else "",
    )


def registered_checkpoints(trial: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(path, metrics)`` of every checkpoint Tune tracks for ``trial``,
    oldest first; the last one is the one Tune would restore from."""
    manager = trial.run_metadata.checkpoint_manager
    if manager is None:
        return []
    results = list(manager._checkpoint_results)
    latest = manager._latest_checkpoint_result
    if latest is not None and all(r is not latest for r in results):
        results.append(latest)
    return [(str(r.checkpoint.path), dict(r.metrics)) for r in results if r.checkpoint]


def set_registered_checkpoints(
    trial: Any, checkpoints: list[tuple[str, dict[str, Any]]], *, last_index: int | None = None
) -> None:
    """Make Tune track exactly ``checkpoints`` (oldest first; the last is the
    one to restore from) for ``trial``.

    ``last_index``: the highest ``checkpoint_NNNNNN`` index on disk, so the
    trial's next checkpoint gets a new directory instead of overwriting one.
    """
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult

    manager = trial.run_metadata.checkpoint_manager
    storage = trial.storage
    results = [
        _TrainingResult(
            checkpoint=Checkpoint(path=path, filesystem=storage.storage_filesystem),
            metrics=dict(metrics),
        )
        for path, metrics in checkpoints
    ]
    manager._checkpoint_results = results
    manager._latest_checkpoint_result = results[-1] if results else None
    if last_index is not None and last_index > storage.current_checkpoint_index:
        storage.current_checkpoint_index = last_index
    trial.invalidate_json_state()
    trial.run_metadata.invalidate_cache()


# ---------------------------------------------------------------- restored tuners


def set_restored_callbacks(tuner: Any, callbacks: list[Any]) -> None:
    """Give a ``Tuner.restore``-d tuner these callbacks instead of the pickled
    ones (which lost their display hooks and miss the caller's new ones)."""
    tuner._local_tuner.get_run_config().callbacks = list(callbacks)


def experiment_storage(storage_path: str, experiment_dir_name: str) -> Any:
    """Tune's storage context of one experiment (``ray.train._internal.storage.
    StorageContext``; its filesystem is resolved once, and each ``Trial`` given it
    copies it)."""
    from ray.train._internal.storage import StorageContext

    return StorageContext(storage_path=storage_path, experiment_dir_name=experiment_dir_name)


def auto_address() -> tuple[str, str] | None:
    """What ``ray.init(address="auto")`` joins, and where it was found:
    ``$RAY_ADDRESS`` when set, else the address the last ``ray start`` on this
    machine wrote to Ray's temp folder; None when neither names one (Ray then
    looks for a running GCS process itself, or refuses at once)."""
    import os

    from ray._private.services import find_bootstrap_address

    env = os.environ.get("RAY_ADDRESS", "")
    if env:
        return env, "$RAY_ADDRESS"
    found = find_bootstrap_address(None)
    return None if not found else (str(found), "the address file of the last `ray start`")


@contextmanager
def loopback_addresses_kept() -> Iterator[None]:
    """Within it, this process's ``ray_constants.ENABLE_RAY_CLUSTER`` is False: the
    constant behind ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, read by
    ``services.get_node_ip_address`` when ``ray.init`` resolves a loopback address
    (False: 127.0.0.1 is kept). Only this process's module constant changes, not
    the environment."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def serve_details() -> dict[str, Any] | None:
    """Serve's own description of what runs (``get_serve_details``: apps, target
    groups with their replicas' ports), from the client of the Serve running on
    this process's Ray; None when Serve is not running there."""
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    return None if client is None else dict(client.get_serve_details())
