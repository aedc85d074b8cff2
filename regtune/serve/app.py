"""The Ray Serve application: one deployment whose replicas hold the model versions.

``build_app`` is the application builder for Serve config files::

    # serve.yaml -- serve run serve.yaml  /  serve deploy serve.yaml
    proxy_location: HeadOnly
    http_options: {host: 127.0.0.1, port: 8000}
    applications:
      - name: regtune-adult
        route_prefix: /
        import_path: regtune.serve.app:build_app
        args: {model: "adult:3", canary: "4", canary_weight: 0.1, storage: /data/runs}

(``serve run regtune.serve.app:build_app model=adult:3`` works too;
``regtune serve --write-config`` writes such a file with
:func:`regtune.serve.settings.config_text`.) The args
are :class:`~regtune.serve.settings.ServeSettings`. Each replica loads the
versions itself from the registry, so the registry must be readable where
the replicas run. The bearer token is read from ``$<token_env>`` where the
application is built (the ``serve run`` / ``regtune serve`` process, or the
cluster for ``serve deploy``); only its sha256 reaches the replicas.

The primary, canary and shadow live in one replica (one deployment): a
request needs no hop between deployments, and the canary's disagreement
with the primary is measured on the same records. Each build makes one
deployment id that every replica gets (a restarted one too), so a canary
rollback persists across replica restarts (:mod:`regtune.serve.markers`).
The primary's forward passes are batched across concurrent requests with
``@serve.batch`` (no wait by default; a lone request skips the batcher, see
:mod:`regtune.serve.service`). Serve's per-request access log is off unless
``access_log`` is set.

With Serve's direct ingress (``RAY_SERVE_ENABLE_DIRECT_INGRESS=1``, or
``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` which includes it, where Ray starts;
:func:`request_direct_ingress` sets the latter and ``regtune serve`` calls it
for the local Ray it starts) each replica also serves HTTP on its own port,
on the proxy's host (127.0.0.1 by default); :func:`replica_urls` lists them.
That path skips the proxy's hop and measured several times faster than the
proxy (``benchmarks/serve_load.py``).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import torch
from fastapi import FastAPI
from ray import serve
from ray.serve import Application, Deployment

from regtune.serve.http import create_api, token_digest
from regtune.serve.metrics import RayMetrics
from regtune.serve.predictor import set_torch_threads
from regtune.serve.service import ModelService, Rows, load_service
from regtune.serve.settings import THROUGHPUT_ENV, ServeSettings, parse_settings

__all__ = [
    "DEPLOYMENT_NAME",
    "DIRECT_INGRESS_ENV",
    "FAST_INGRESS_ENV",
    "ModelServer",
    "build_app",
    "replica_urls",
    "request_direct_ingress",
    "start_http",
]

DEPLOYMENT_NAME = "RegtuneModel"
#: Ray Serve's switch for direct ingress (replicas serve HTTP on their own ports).
DIRECT_INGRESS_ENV = "RAY_SERVE_ENABLE_DIRECT_INGRESS"
#: What :func:`request_direct_ingress` puts in the environment (unless already set;
#: :data:`~regtune.serve.settings.THROUGHPUT_ENV` is Serve's throughput-optimized mode).
FAST_INGRESS_ENV = {THROUGHPUT_ENV: "1", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}
#: Target names of replicas in Serve's target groups (proxies are named otherwise).
REPLICA_TARGET = "SERVE_REPLICA"
#: ``serve.batch`` needs values at decoration time; each replica resets them from its settings.
_BATCH_SIZE, _BATCH_WAIT_S = 32, 0.0


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress()
class ModelServer:
    """One replica: loads the versions named in ``settings`` and serves them over HTTP."""

    def __init__(
        self,
        settings: Mapping[str, Any],
        token_sha256: str | None = None,
        deployment: str | None = None,
    ) -> None:
        self.settings = parse_settings(settings)
        set_torch_threads(self.settings.torch_threads)
        self.token_sha256 = token_sha256
        batched = self.settings.max_batch_size > 1
        # A restarted replica gets the same ``deployment`` id: it keeps a canary rollback.
        self.service: ModelService = load_service(
            self.settings,
            forward=self._batched if batched else None,
            metrics=RayMetrics(),
            deployment=deployment,
        )
        # serve.batch's wrapper carries setters its type stub does not declare.
        batcher: Any = self._batched
        batcher.set_max_batch_size(self.settings.max_batch_size)
        batcher.set_batch_wait_timeout_s(self.settings.batch_wait_ms / 1000.0)

    @serve.batch(max_batch_size=_BATCH_SIZE, batch_wait_timeout_s=_BATCH_WAIT_S)
    async def _batched(self, batch: list[Rows]) -> list[np.ndarray]:
        return self.service.forward_batch(batch)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self.service, token_sha256=self.token_sha256)

    def check_health(self) -> None:
        """Serve's health probe: the primary answers one encoded row of zeros."""
        width = self.service.primary.schema.n_features
        self.service.primary.probabilities(torch.zeros(1, width))


def build_app(args: Mapping[str, Any] | ServeSettings) -> Application:
    """The Serve application builder (``import_path: regtune.serve.app:build_app``).

    Raises:
        SpecError: an unknown key or a bad value in ``args``.
    """
    settings = parse_settings(args)
    token = os.environ.get(settings.token_env)
    digest = token_digest(token) if token else None
    deployment = cast(Deployment, ModelServer).options(
        num_replicas=settings.num_replicas,
        max_ongoing_requests=settings.max_ongoing_requests,
        ray_actor_options={"num_cpus": settings.num_cpus},
        logging_config={"enable_access_log": settings.access_log},
    )
    # One id per build: the replicas of this deployment (restarted ones too) share it.
    # The keys that were given (the rest are defaults, the same in the replica): a
    # canary_weight that was never given stays unset, which the settings check reads.
    given = settings.model_dump(mode="json", exclude_unset=True)
    return deployment.bind(given, digest, uuid.uuid4().hex)


def start_http(host: str, port: int) -> None:
    """Start Serve's HTTP proxy on ``host:port`` (the head node only).

    With direct ingress (:func:`request_direct_ingress`) each replica also
    listens on its own port, on the same ``host``.
    """
    serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")


def request_direct_ingress() -> None:
    """Turn on Serve's throughput-optimized mode, direct ingress included, for the Ray
    this process starts next.

    Ray Serve reads ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` when its controller and
    replicas start, so this only works before ``ray.init`` starts a local Ray
    (a cluster joined with ``--address`` keeps its own setting). Each replica
    then runs its own HTTP server (ports from 30000, on the proxy's host) next
    to the proxy, and runs the app on its main event loop; requests sent to
    the replica's port skip the proxy's hop. A stopping replica drains for 1 s
    instead of Serve's 30 (that wait is for external load balancers to drop
    it). Values already in the environment are kept.
    """
    for key, value in FAST_INGRESS_ENV.items():
        os.environ.setdefault(key, value)


def replica_urls(app_name: str, *, timeout_s: float = 15.0) -> list[str]:
    """Base URLs of the app's replicas' own HTTP servers (direct ingress); [] without it.

    Serve publishes replica ports on its controller's next loop, so this waits
    up to ``timeout_s`` when direct ingress is on.
    """
    # Serve's public API does not expose target groups yet; its client does.
    import ray

    from regtune.platform.tune.ray_private import serve_details

    if not ray.is_initialized():  # the client would start a Ray of its own
        return []
    deadline = time.monotonic() + timeout_s
    while True:
        details = serve_details()
        if details is None:  # Serve is not running here
            return []
        urls = [
            f"http://{target['ip']}:{target['port']}"
            for group in details.get("target_groups") or []
            if group.get("app_name") == app_name and group.get("protocol") == "HTTP"
            for target in group.get("targets") or []
            if str(target.get("name", "")).startswith(REPLICA_TARGET)
        ]
        expected = any(os.environ.get(k) == "1" for k in (DIRECT_INGRESS_ENV, THROUGHPUT_ENV))
        if urls or not expected or time.monotonic() > deadline:
            return urls
        time.sleep(0.1)
