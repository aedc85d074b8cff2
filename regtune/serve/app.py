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

(``serve run regtune.serve.app:build_app model=adult:3`` works too.) The args
are :class:`~regtune.serve.settings.ServeSettings`. Each replica loads the
versions itself from the registry, so the registry must be readable where
the replicas run. The bearer token is read from ``$<token_env>`` where the
application is built (the ``serve run`` / ``regtune serve`` process, or the
cluster for ``serve deploy``); only its sha256 reaches the replicas.

The primary, canary and shadow live in one replica (one deployment): a
request needs no hop between deployments, and the canary's disagreement
with the primary is measured on the same records. The primary's forward
passes are batched across concurrent requests with ``@serve.batch``.
"""

from __future__ import annotations

import os
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
from regtune.serve.service import ModelService, load_service
from regtune.serve.settings import ServeSettings, parse_settings

__all__ = ["DEPLOYMENT_NAME", "ModelServer", "build_app", "start_http", "write_config"]

DEPLOYMENT_NAME = "RegtuneModel"
#: ``serve.batch`` needs values at decoration time; each replica resets them from its settings.
_BATCH_SIZE, _BATCH_WAIT_S = 16, 0.002


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress()
class ModelServer:
    """One replica: loads the versions named in ``settings`` and serves them over HTTP."""

    def __init__(self, settings: Mapping[str, Any], token_sha256: str | None = None) -> None:
        self.settings = parse_settings(settings)
        set_torch_threads(self.settings.torch_threads)
        self.token_sha256 = token_sha256
        batched = self.settings.max_batch_size > 1
        self.service: ModelService = load_service(
            self.settings, forward=self._batched if batched else None, metrics=RayMetrics()
        )
        # serve.batch's wrapper carries setters its type stub does not declare.
        batcher: Any = self._batched
        batcher.set_max_batch_size(self.settings.max_batch_size)
        batcher.set_batch_wait_timeout_s(self.settings.batch_wait_ms / 1000.0)

    @serve.batch(max_batch_size=_BATCH_SIZE, batch_wait_timeout_s=_BATCH_WAIT_S)
    async def _batched(self, xs: list[torch.Tensor]) -> list[np.ndarray]:
        return self.service.forward_batch(xs)

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
    )
    return deployment.bind(settings.model_dump(mode="json"), digest)


def start_http(host: str, port: int) -> None:
    """Start Serve's HTTP proxy on ``host:port`` (the head node only)."""
    serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")


def write_config(settings: ServeSettings, *, host: str, port: int, app_name: str) -> str:
    """A Serve config file (YAML text) for ``serve run`` / ``serve deploy``."""
    import yaml

    defaults = ServeSettings(model=settings.model).model_dump(mode="json")
    args = {k: v for k, v in settings.model_dump(mode="json").items() if v != defaults.get(k)}
    args["model"] = settings.model
    config = {
        "proxy_location": "HeadOnly",
        "http_options": {"host": host, "port": port},
        "applications": [
            {
                "name": app_name,
                "route_prefix": "/",
                "import_path": "regtune.serve.app:build_app",
                "args": args,
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)
