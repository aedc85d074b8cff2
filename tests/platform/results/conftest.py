"""Fixtures of the results-store tests: a local S3-compatible server, Tune-like results."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

BUCKET = "regtune-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """moto's S3 server on 127.0.0.1 with one bucket; the AWS variables that
    point pyarrow (and Ray Tune) at it are set while the module runs and
    returned for subprocesses."""
    pytest.importorskip("moto")
    import boto3
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
        for key, value in env.items():
            mp.setenv(key, value)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield env
    server.stop()


def tune_result(
    iteration: int, config: dict[str, Any] | None = None, **metrics: float
) -> dict[str, Any]:
    """A result dict shaped like the ones Tune hands a callback."""
    return {
        "training_iteration": iteration,
        "time_total_s": 0.5 * iteration,
        "time_this_iter_s": 0.5,
        "timestamp": 1_700_000_000 + iteration,
        "date": "2026-11-30_12-00-00",
        "pid": 1234,
        "hostname": "host",
        "node_ip": "127.0.0.1",
        "done": False,
        "trial_id": "ignored",
        "iterations_since_restore": iteration,
        "time_since_restore": 0.5 * iteration,
        "checkpoint_dir_name": None,
        "epoch": float(iteration),
        "config": config or {},
        **metrics,
    }
