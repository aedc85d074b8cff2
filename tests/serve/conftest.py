"""A small real registry (Adult models trained here) and one Serve instance on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import torch

from tests.conftest import first_training_rows

if TYPE_CHECKING:
    from regtune.platform.registry import ModelVersion
    from regtune.trainables.data import Dataset

#: Training rows kept: enough for a sensible model, few enough to train in a second.
TRAIN_ROWS = 4000
MODEL = "adult"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def loopback_uvicorn(api: Any) -> AsyncIterator[tuple[str, int]]:
    """Serve the ASGI ``api`` with uvicorn on a free 127.0.0.1 socket (as Ray
    Serve's proxy serves the app) for the ``async with`` block; yields (host,
    port) once the server has started, and stops it on the way out."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            api, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            host, port = sock.getsockname()
            yield str(host), int(port)
        finally:
            server.should_exit = True
            await serving


@dataclasses.dataclass(frozen=True)
class Registry:
    """The registry directory and the versions written into it."""

    root: str
    dataset: Dataset
    versions: dict[str, ModelVersion]


def _small(adult: Dataset) -> Dataset:
    raw = None if adult.raw_train is None else adult.raw_train.iloc[:TRAIN_ROWS]
    return dataclasses.replace(first_training_rows(adult, TRAIN_ROWS), raw_train=raw)


@pytest.fixture(scope="session")
def registry(adult: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Versions of model ``adult``: 1 and 2 trained (seeds 0, 1), 3 = 1 with its
    output layer negated (disagrees with 1), 4 = 1 with NaN weights (fails)."""
    from regtune.platform.registry import Member, save_version
    from regtune.trainables.loop import train

    dataset = _small(adult)
    root = str(tmp_path_factory.mktemp("registry"))
    versions: dict[str, ModelVersion] = {}
    configs: dict[str, dict[str, Any]] = {}
    models: dict[str, torch.nn.Module] = {}
    for key, seed in (("primary", 0), ("canary", 1)):
        config = {
            "dataset": "adult",
            "model": {"arch": "mlp", "width": 16, "depth": 1},
            "training": {"epochs": 2, "batch_size": 256, "seed": seed, "robust_every": 0},
        }
        result = train(config, dataset=dataset, device="cpu")
        configs[key], models[key] = config, result.model
        member = Member.from_model(config, result.model)
        versions[key] = save_version(MODEL, [member], dataset, root=root)
    state = {k: v.detach().clone() for k, v in models["primary"].state_dict().items()}
    last = sorted(k for k in state if k.endswith("weight"))[-1]
    flipped = {k: (-v if k == last or k == last.replace("weight", "bias") else v)
               for k, v in state.items()}  # fmt: skip
    # Finite weights whose products overflow: the version answers NaN probabilities,
    # as a model that overflows at serving time would (save_version refuses NaN weights).
    broken = {k: torch.full_like(v, 3e38) for k, v in state.items()}
    for key, tensors in (("flipped", flipped), ("broken", broken)):
        member = Member(config=configs["primary"], state=tensors)
        versions[key] = save_version(MODEL, [member], dataset, root=root, metrics={})
    return Registry(root=root, dataset=dataset, versions=versions)


@dataclasses.dataclass(frozen=True)
class Served:
    """Serve on ``base``: app "main" at ``/`` and app "guarded" at ``/guarded``."""

    base: str
    registry: Registry
    token: str


@pytest.fixture(scope="module")
def served(ray_local: None, registry: Registry) -> Iterator[Served]:
    """One Serve instance for the module, with two applications.

    ``main``: primary 1, canary 2 at weight 0.3, shadow 3 (flipped), batching on,
    drift window 400 (verdict from 100). ``guarded``: primary 1, canary 4
    (broken) at weight 1.0 that must roll back after 5 requests, a bearer token.
    """
    from ray import serve

    from regtune.serve.app import build_app, start_http

    port = free_port()
    start_http("127.0.0.1", port)
    common = {"registry": registry.root, "num_cpus": 0, "max_instances": 500,
              "max_body_bytes": 200_000}  # fmt: skip
    main = build_app({**common, "model": f"{MODEL}:1", "canary": "2", "canary_weight": 0.3,
                      "shadow": "3", "drift_window": 400, "drift_min_window": 100,
                      "max_batch_size": 8, "batch_wait_ms": 1.0,
                      # The machine is shared and loaded: only errors may roll this canary back.
                      "max_p99_ms": 60_000.0, "max_disagreement": 0.5})  # fmt: skip
    token = "s3cret-token"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REGTUNE_TEST_TOKEN", token)
        guarded = build_app({**common, "model": f"{MODEL}:1", "canary": "4", "canary_weight": 1.0,
                             "min_requests": 5, "token_env": "REGTUNE_TEST_TOKEN"})  # fmt: skip
    # Deployed together: the two replicas start (import torch, load their versions) at once.
    serve.run_many([serve.RunTarget(main, name="main", route_prefix="/"),
                    serve.RunTarget(guarded, name="guarded", route_prefix="/guarded")])  # fmt: skip
    try:
        yield Served(base=f"http://127.0.0.1:{port}", registry=registry, token=token)
    finally:
        serve.shutdown()
