"""Serving metrics exported through Ray (Prometheus format, Ray dashboard).

Names (all tagged with ``model``)::

    regtune_serve_latency_ms           histogram   per request, tag version
    regtune_serve_predictions_total    counter     records per predicted class, tags version, label
    regtune_serve_rejected_total       counter     refused requests, tag status (4xx)
    regtune_serve_drift_index          gauge       mean PSI of the rolling window
    regtune_serve_feedback_accuracy    gauge       accuracy on labelled traffic
    regtune_serve_feedback_ece         gauge       ECE on labelled traffic
    regtune_serve_canary_weight        gauge       current canary share (0 after rollback)

``version`` is the answering version's number, or its full reference
(``other:1``) for a canary that is another model's version, so that its
requests never share the primary's series.
``model`` is always the served model's own name, never one a client sent
(a path naming another model would otherwise make a new series). Every
refusal counts once, where the HTTP layer produces it: validation, unknown
model or route, oversized body (413), missing or wrong token (401), feedback.

Ray's metrics agent collects them from every replica and serves them on its
metrics export port with a ``ray_`` prefix (``ray_regtune_serve_latency_ms_bucket``);
outside Ray (the plain uvicorn process of the benchmark) :class:`NoMetrics`
records nothing.

Ray drops a gauge from the scrape some 20-30 s after it was last set
(measured with a plain ``ray.util.metrics.Gauge`` as well), while these are
set only on events: the canary weight once at start (and at a rollback),
drift and feedback by the service's refreshes after traffic or labels (at
most every 10 s, :data:`regtune.serve.service.GAUGE_EVERY_S`) and when read.
So each gauge's last value is set again every :data:`GAUGE_REFRESH_S`
seconds (:class:`GaugeKeeper`), and a quiet model still shows them.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Sequence
from typing import Any

__all__ = [
    "GAUGE_REFRESH_S",
    "LATENCY_BOUNDARIES_MS",
    "GaugeKeeper",
    "NoMetrics",
    "RayMetrics",
    "ServeMetrics",
]

#: Seconds between settings of each gauge's last value (Ray drops one unset
#: for about 20 s from the scrape).
GAUGE_REFRESH_S = 5.0

#: Histogram bucket edges in milliseconds.
LATENCY_BOUNDARIES_MS = [0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 1000.0]


class ServeMetrics:
    """The recording interface; this base records nothing."""

    def request(
        self, model: str, version: int | str, latency_ms: float, labels: Sequence[str]
    ) -> None:
        """One answered request and its predicted labels."""

    def rejected(self, model: str, status: int) -> None:
        """One refused request."""

    def drift(self, model: str, index: float) -> None:
        """The current drift index."""

    def feedback(self, model: str, accuracy: float, ece: float) -> None:
        """Accuracy and ECE on labelled traffic."""

    def canary(self, model: str, weight: float) -> None:
        """The canary's current weight."""


NoMetrics = ServeMetrics


class GaugeKeeper:
    """Sets gauges and keeps their last values, setting them again every
    ``refresh_s`` seconds from a daemon thread (started by the first set), so
    that they stay in the scrape between events (see the module docstring)."""

    def __init__(self, refresh_s: float = GAUGE_REFRESH_S) -> None:
        self.refresh_s = refresh_s
        self._last: dict[tuple[int, tuple[tuple[str, str], ...]], tuple[Any, float]] = {}
        # Sets and replays hold it: a replay never writes a value back over a
        # newer one (a canary rolled back to 0 stays 0).
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set(self, gauge: Any, value: float, tags: dict[str, str]) -> None:
        """``gauge.set(value, tags=tags)`` now, and again every ``refresh_s``."""
        with self._lock:
            gauge.set(value, tags=tags)
            self._last[(id(gauge), tuple(sorted(tags.items())))] = (gauge, value)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="regtune-gauges", daemon=True
                )
                self._thread.start()

    def replay(self) -> int:
        """Set every kept gauge to its last value once; how many were set."""
        with self._lock:
            for (_, tags), (gauge, value) in self._last.items():
                gauge.set(value, tags=dict(tags))
            return len(self._last)

    def close(self) -> None:
        """Stop the refreshing thread (the last values stay as set)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.replay()


class RayMetrics(ServeMetrics):
    """Records through :mod:`ray.util.metrics`; create it inside a Ray worker (a replica)."""

    def __init__(self, refresh_s: float = GAUGE_REFRESH_S) -> None:
        from ray.util import metrics

        self._gauges = GaugeKeeper(refresh_s)
        self._latency = metrics.Histogram(
            "regtune_serve_latency_ms",
            description="Predict request latency inside the replica (ms).",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("model", "version"),
        )
        self._predictions = metrics.Counter(
            "regtune_serve_predictions_total",
            description="Records predicted, per class.",
            tag_keys=("model", "version", "label"),
        )
        self._rejected = metrics.Counter(
            "regtune_serve_rejected_total",
            description="Requests refused with a 4xx, per status.",
            tag_keys=("model", "status"),
        )
        self._drift = metrics.Gauge(
            "regtune_serve_drift_index",
            description="Mean PSI of the served window against the training reference.",
            tag_keys=("model",),
        )
        self._accuracy = metrics.Gauge(
            "regtune_serve_feedback_accuracy",
            description="Accuracy on served records with ground-truth feedback.",
            tag_keys=("model",),
        )
        self._ece = metrics.Gauge(
            "regtune_serve_feedback_ece",
            description="Expected calibration error on served records with feedback.",
            tag_keys=("model",),
        )
        self._canary = metrics.Gauge(
            "regtune_serve_canary_weight",
            description="Share of traffic the canary answers (0 after a rollback).",
            tag_keys=("model",),
        )

    def request(
        self, model: str, version: int | str, latency_ms: float, labels: Sequence[str]
    ) -> None:
        tags = {"model": model, "version": str(version)}
        self._latency.observe(latency_ms, tags=tags)
        for label, count in Tally(labels).items():
            self._predictions.inc(count, tags={**tags, "label": label})

    def rejected(self, model: str, status: int) -> None:
        self._rejected.inc(1, tags={"model": model, "status": str(status)})

    def drift(self, model: str, index: float) -> None:
        self._gauges.set(self._drift, index, {"model": model})

    def feedback(self, model: str, accuracy: float, ece: float) -> None:
        self._gauges.set(self._accuracy, accuracy, {"model": model})
        self._gauges.set(self._ece, ece, {"model": model})

    def canary(self, model: str, weight: float) -> None:
        self._gauges.set(self._canary, weight, {"model": model})
