"""Which version answers a request, and when does a canary roll back?

Assignment is deterministic: a request id's crc32 picks one of
:data:`BUCKETS` buckets, and the first ``weight * BUCKETS`` buckets go to the
canary. The same id always lands on the same version (a client retry sees the
same model), and no global random state is involved.

The canary is judged over a rolling window of its own requests
(:class:`RolloutLimits`): once it holds ``min_requests``, it rolls back when
its error rate, its p99 latency or its disagreement with the primary (the
share of its records whose label differs from the primary's) passes the
limit. Rolling back sets its weight to 0, stops its traffic for the rest of
the deployment and appends one entry to the log shown at ``GET
/v1/models/{name}``; the service also writes the entry as a marker
(:mod:`regtune.serve.markers`) that a replica Serve restarts honours
(:meth:`RolloutState.restore`), so a restart does not bring the canary back. A shadow
version sees every request but never answers; its disagreement, errors and
latency are recorded the same way and never trigger anything.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from regtune.serve.settings import (
    BUCKETS,
    DEFAULT_MAX_DISAGREEMENT,
    DEFAULT_MAX_ERROR_RATE,
    DEFAULT_MAX_P99_MS,
    DEFAULT_MIN_REQUESTS,
    DEFAULT_ROLLOUT_WINDOW,
    routed_buckets,
)

__all__ = [
    "BUCKETS",
    "Observation",
    "RolloutLimits",
    "RolloutState",
    "VersionStats",
    "breaches",
    "bucket",
    "routes_to_canary",
]

Route = Literal["primary", "canary"]


def bucket(request_id: str) -> int:
    """The request's bucket in ``[0, BUCKETS)``, from crc32 of its id."""
    return zlib.crc32(request_id.encode("utf-8")) % BUCKETS


def routes_to_canary(request_id: str, weight: float) -> bool:
    """Whether a canary at ``weight`` (share of traffic, 0..1) answers ``request_id``."""
    return bucket(request_id) < routed_buckets(weight)


@dataclass(frozen=True)
class RolloutLimits:
    """When a canary rolls back; every limit is checked over the last ``window`` requests."""

    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_p99_ms: float = DEFAULT_MAX_P99_MS
    max_disagreement: float = DEFAULT_MAX_DISAGREEMENT
    min_requests: int = DEFAULT_MIN_REQUESTS
    window: int = DEFAULT_ROLLOUT_WINDOW

    def __post_init__(self) -> None:
        for name in ("max_error_rate", "max_disagreement"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; got {value}")
        if self.max_p99_ms <= 0:
            raise ValueError(f"max_p99_ms must be > 0; got {self.max_p99_ms}")
        if not 1 <= self.min_requests <= self.window:
            raise ValueError(
                f"min_requests must be in [1, window={self.window}]; got {self.min_requests}"
            )


@dataclass(frozen=True)
class Observation:
    """One request served by a canary or shadow version.

    ``disagreements`` counts records whose label differs from the primary's
    (0 when ``error``: a failed version has no labels to compare).
    """

    error: bool
    latency_ms: float
    records: int
    disagreements: int


@dataclass
class VersionStats:
    """Rolling statistics of one canary or shadow version."""

    window: int = 200
    requests: int = 0
    errors: int = 0
    records: int = 0
    disagreements: int = 0
    recent: deque[Observation] = field(init=False)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.window)

    def add(self, obs: Observation) -> None:
        """Count one request."""
        self.recent.append(obs)
        self.requests += 1
        self.errors += obs.error
        self.records += obs.records
        self.disagreements += obs.disagreements

    def summary(self) -> dict[str, Any]:
        """Totals and the window's error rate, p99 latency (ms) and disagreement rate."""
        recent = list(self.recent)
        judged = [o for o in recent if not o.error]
        records = sum(o.records for o in judged)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "records": self.records,
            "disagreements": self.disagreements,
            "window_requests": len(recent),
            "error_rate": sum(o.error for o in recent) / len(recent) if recent else 0.0,
            "p99_ms": float(np.percentile([o.latency_ms for o in recent], 99)) if recent else 0.0,
            "disagreement": sum(o.disagreements for o in judged) / records if records else 0.0,
        }


def breaches(summary: dict[str, Any], limits: RolloutLimits) -> list[str]:
    """The limits a version's :meth:`VersionStats.summary` passes, in words (empty: none)."""
    if summary["window_requests"] < limits.min_requests:
        return []
    found = []
    if summary["error_rate"] > limits.max_error_rate:
        found.append(f"error rate {summary['error_rate']:.3f} > {limits.max_error_rate}")
    if summary["p99_ms"] > limits.max_p99_ms:
        found.append(f"p99 latency {summary['p99_ms']:.1f} ms > {limits.max_p99_ms} ms")
    if summary["disagreement"] > limits.max_disagreement:
        found.append(f"disagreement {summary['disagreement']:.3f} > {limits.max_disagreement}")
    return found


class RolloutState:
    """The canary of one served model: its weight, statistics and rollback log.

    Lives in one replica; with several replicas each judges its own share of
    the canary traffic.
    """

    def __init__(
        self,
        version: int | None,
        weight: float,
        limits: RolloutLimits = RolloutLimits(),
        *,
        name: str | None = None,
    ) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"canary weight must be in [0, 1]; got {weight}")
        #: The canary's model name (the served model's, or another model's), None: no canary.
        self.name = name if version is not None else None
        self.version = version
        self.weight = weight if version is not None else 0.0
        self.limits = limits
        self.stats = VersionStats(window=limits.window)
        self.log: list[dict[str, Any]] = []

    @property
    def status(self) -> str:
        """``"none"``, ``"active"`` or ``"rolled_back"``."""
        if self.version is None:
            return "none"
        return "rolled_back" if self.log else "active"

    def route(self, request_id: str) -> Route:
        """Which version answers ``request_id``."""
        if self.weight > 0.0 and routes_to_canary(request_id, self.weight):
            return "canary"
        return "primary"

    def observe(self, obs: Observation) -> dict[str, Any] | None:
        """Record one canary request; returns the rollback entry when this one triggers it."""
        self.stats.add(obs)
        if self.status != "active":
            return None
        summary = self.stats.summary()
        reasons = breaches(summary, self.limits)
        if not reasons:
            return None
        entry = {
            "time": time.time(),
            "name": self.name,
            "version": self.version,
            "weight_before": self.weight,
            "reasons": reasons,
            "stats": summary,
        }
        self.weight = 0.0
        self.log.append(entry)
        return entry

    def restore(self, entry: dict[str, Any]) -> None:
        """Start rolled back: an earlier replica of this deployment rolled the canary back
        (``entry`` is its log entry, kept with ``"restored": true``)."""
        if self.version is None:
            return
        self.weight = 0.0
        self.log.append({**entry, "restored": True})

    def snapshot(self) -> dict[str, Any]:
        """The canary's state for ``GET /v1/models/{name}``."""
        return {
            "name": self.name,
            "version": self.version,
            "weight": self.weight,
            "status": self.status,
            "limits": {
                "max_error_rate": self.limits.max_error_rate,
                "max_p99_ms": self.limits.max_p99_ms,
                "max_disagreement": self.limits.max_disagreement,
                "min_requests": self.limits.min_requests,
                "window": self.limits.window,
            },
            "stats": self.stats.summary(),
            "rollback_log": list(self.log),
        }
