"""Fixtures of the results-store tests: Tune-like results (S3: tests/conftest.py)."""

from __future__ import annotations

from typing import Any


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
