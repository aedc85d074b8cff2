"""One served model behind the HTTP routes, with no web framework and no Ray in it.

:class:`ModelService` holds the primary version and optionally a canary and a
shadow, and answers what the routes ask: predict, describe, drift, feedback.
The primary's forward pass is injected (``forward``), so Ray Serve can batch
it with ``@serve.batch`` while a plain process calls the model directly; the
rest is identical in both.

A predict request, in order: validate the body (4xx on any problem); the
request id picks primary or canary (:mod:`.rollout`); the primary always
runs; a canary request also runs the canary, whose answer is returned unless
it fails, in which case the primary's is (the client never sees a canary
fault) and the failure counts toward rollback. A canary or shadow that
refuses a record's group value (it has no group for it and its answer depends
on the group, see :mod:`.predictor`) fails that way when the primary knows the
value (as one of its groups or a category of that feature): the version is at
fault. When the primary does not know it either (it answers it as an unseen
category), the value is the client's: the primary answers and the version is
not judged on that request (``unjudged`` at ``GET /v1/models/{name}``). The
answer is kept for feedback (groups named by the primary's codes) and the
records join the drift window (categories placed by the primary's schema, as
its encoder places them); the shadow runs after the answer is ready and only
its statistics change (on the same event loop: it never delays the answer, but
requests arriving meanwhile wait one forward pass). The drift and feedback
gauges are refreshed at most every :data:`GAUGE_EVERY_S`, and at most that long
after the windows last changed (a trailing refresh when traffic stops; none
while nothing changes), by a background task
whose O(window) arithmetic runs in a worker thread on a copy of the window;
``GET`` drift and feedback compute theirs in a worker thread the same way, and
``POST`` feedback only joins the labels (``{"labelled": n}``). The records'
sensitive-group codes are computed once per request and go to the forward pass
(per-group temperatures), the decision (per-group thresholds) and feedback.

With a batched forward, a request that is alone is not held for a batch:
before its forward pass it yields to the event loop once, so requests that
have already arrived catch up; if it is then the only request in the service
(none other in :meth:`ModelService.predict`, and none whose body the HTTP
layer is still reading, :attr:`ModelService.reading`) it runs the model
directly, otherwise it joins the batch (``@serve.batch`` in :mod:`.app`). A
lone request thus skips the batcher's queueing (0.4 to 1.4 ms per call
measured on a loaded 2-core machine) while concurrent requests are batched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import ValidationError

from regtune.serve.drift import DriftMonitor
from regtune.serve.feedback import FeedbackTracker
from regtune.serve.markers import RollbackMarker
from regtune.serve.metrics import NoMetrics, ServeMetrics
from regtune.serve.predictor import ServedModel
from regtune.serve.protocol import (
    LEAVE_OUT,
    MAX_REQUEST_ID_CHARS,
    FeedbackRequest,
    RecordValidator,
    RequestError,
    cut_text,
    refuse_bom,
    refuse_duplicate_keys,
)
from regtune.serve.rollout import Observation, RolloutState, VersionStats
from regtune.serve.settings import ServeSettings, check_other_version

if TYPE_CHECKING:
    from regtune.platform.registry import ModelVersion

__all__ = ["GAUGE_EVERY_S", "Forward", "Groups", "ModelService", "Rows", "load_service"]

_log = logging.getLogger(__name__)

#: Sensitive-group codes of a request's records (None: unknown or no sensitive attribute).
Groups = list[int | None] | None
#: One request's encoded rows and their groups.
Rows = tuple[torch.Tensor, Groups]
#: The primary's batched forward pass: one request's rows -> their class probabilities.
Forward = Callable[[Rows], Awaitable[np.ndarray]]

#: The drift and feedback gauges are refreshed at most this often (seconds), and
#: show the windows as they were at most this long (plus the refresh's own time)
#: after their last change, even if no request follows. A
#: refresh is O(window) (a drift report over every feature, ECE over every labelled
#: row), so it runs in a background task, its arithmetic in a worker thread on a
#: snapshot of the windows; requests never wait for it.
GAUGE_EVERY_S = 10.0

NOT_SERVED = "model {name!r} is not served here; served: [{served!r}]"
BAD_FEEDBACK = "{field}: {message}"
LONG_REQUEST_ID = (
    "X-Request-ID is {n} characters; at most {limit} are allowed (feedback must be able "
    "to name the request)"
)


class ModelService:
    """Answers for one model name; see the module docstring.

    Args:
        forward: the primary's batched forward; None runs it directly.
        metrics: where to record (default: nowhere).
        rollback_marker: where a canary rollback is kept across replica restarts
            (read when the service starts, written when the canary rolls back).
    """

    def __init__(
        self,
        settings: ServeSettings,
        primary: ModelVersion,
        canary: ModelVersion | None = None,
        shadow: ModelVersion | None = None,
        *,
        forward: Forward | None = None,
        metrics: ServeMetrics | None = None,
        rollback_marker: RollbackMarker | None = None,
    ) -> None:
        self.settings = settings
        self.primary = ServedModel(primary)
        self.canary = ServedModel(canary) if canary is not None else None
        self.shadow = ServedModel(shadow) if shadow is not None else None
        for role, other in (("canary", self.canary), ("shadow", self.shadow)):
            if other is None:
                continue
            check_other_version(
                role,
                other.ref,
                other.schema.input_names(),
                self.primary.ref,
                self.primary.schema.input_names(),
                classes=other.classes,
                primary_classes=self.primary.classes,
            )
        self.name = self.primary.name
        self.validator = RecordValidator(
            self.primary.schema, settings.limits(), groups_required=self.primary.post is not None
        )
        self.rollout = RolloutState(
            None if self.canary is None else self.canary.number,
            settings.canary_weight,
            settings.rollout_limits(),
            name=None if self.canary is None else self.canary.name,
        )
        #: Where a rollback is written, so a restarted replica keeps it (None: memory only).
        self.rollback_marker = rollback_marker if self.canary is not None else None
        if self.rollback_marker is not None:
            earlier = self.rollback_marker.load()
            if earlier is not None:
                self.rollout.restore(earlier)
        #: The marker write in flight after a rollback, if any.
        self.saving: asyncio.Future[None] | None = None
        self.shadow_stats = VersionStats(window=settings.rollout_window)
        #: Requests a canary or shadow was not judged on: it refused a record's group
        #: value that the primary does not know either (the client's value, not its fault).
        self.unjudged = {"canary": 0, "shadow": 0}
        self.monitor = DriftMonitor(
            primary.reference,
            schema=self.primary.schema,
            window=settings.drift_window,
            min_window=settings.drift_min_window,
            index_limit=settings.drift_index_limit,
        )
        self.feedback = FeedbackTracker(
            self.primary.classes,
            self.primary.schema.sensitive_values,
            max_records=settings.feedback_records,
        )
        self.metrics = metrics or NoMetrics()
        self._batched = forward
        #: Seconds between background gauge refreshes (:data:`GAUGE_EVERY_S`).
        self.gauge_every_s = GAUGE_EVERY_S
        self._gauge_at = time.perf_counter()
        #: The background gauge refresh in flight, if any (await it to see its values).
        self.refreshing: asyncio.Task[None] | None = None
        #: The trailing refresh scheduled for when the next one is due, if any.
        self.trailing: asyncio.TimerHandle | None = None
        self._changed_since_gauge = False
        self._labelled_since_gauge = False
        self._active = 0  # requests inside predict()
        #: Requests whose body the HTTP layer is still reading (it keeps this count).
        self.reading = 0
        self.batches = 0
        self.batched_requests = 0
        self.lone_requests = 0
        self.metrics.canary(self.name, self.rollout.weight)

    # -- forward passes ---------------------------------------------------------------

    async def _forward(self, x: torch.Tensor, groups: Groups) -> np.ndarray:
        """The primary's probabilities: directly, or batched unless the request is alone."""
        if self._batched is None:
            return self.primary.probabilities(x, groups)
        await asyncio.sleep(0)  # requests already received get as far as they can
        if self._active + self.reading == 1:
            self.lone_requests += 1
            return self.primary.probabilities(x, groups)
        # The batch is not checked as a whole: only a request whose own rows came
        # out non-finite fails, the others in its batch get their answers.
        return self.primary.check_finite(await self._batched((x, groups)))

    def forward_batch(self, batch: Sequence[Rows]) -> list[np.ndarray]:
        """The primary on several requests' rows at once (what ``@serve.batch`` calls).

        Unchecked: each caller checks its own slice (:meth:`ServedModel.check_finite`).
        """
        self.batches += 1
        self.batched_requests += len(batch)
        codes: Groups = None
        if any(g is not None for _, g in batch):
            codes = [c for x, g in batch for c in (g or [None] * len(x))]
        probs = self.primary.unchecked_probabilities(torch.cat([x for x, _ in batch]), codes)
        cuts = np.cumsum([len(x) for x, _ in batch])[:-1]
        return list(np.split(probs, cuts))

    # -- routes -----------------------------------------------------------------------

    def check_name(self, name: str) -> None:
        """Raise a 404 :class:`RequestError` unless ``name`` is the served model."""
        if name != self.name:
            raise RequestError(
                NOT_SERVED.format(name=name, served=self.name),
                status=404,
                field="name",
                allowed=self.name,
            )

    async def predict(self, name: str, body: bytes, request_id: str) -> dict[str, Any]:
        """Answer one ``POST /v1/models/{name}:predict`` body (KServe v1)."""
        started = time.perf_counter()
        # A refusal raises RequestError; the HTTP layer counts it (every route, one place).
        self.check_name(name)
        if len(request_id) > MAX_REQUEST_ID_CHARS:
            raise RequestError(
                LONG_REQUEST_ID.format(n=len(request_id), limit=MAX_REQUEST_ID_CHARS),
                status=422,
                field="X-Request-ID",
                allowed=f"1 to {MAX_REQUEST_ID_CHARS} characters",
            )
        records = self.validator.validate(body)
        groups = self.primary.groups(records)
        self._active += 1
        try:
            probs = await self._forward(self.primary.encode(records), groups)
        finally:
            self._active -= 1
        answered, answered_groups = self.primary, groups
        answers = self.primary.answers(probs, groups)
        primary_labels = [a["label"] for a in answers]
        if self.canary is not None and self.rollout.route(request_id) == "canary":
            judged = self._judge(self.canary, records, primary_labels, self.rollout)
            if judged is not None:
                probs, answered_groups = judged
                answered = self.canary
                # In the primary's class names (same class ids; a version stored before
                # names were canonical says "1.0" for "1"): one set for clients, drift, metrics.
                answers = self.canary.answers(probs, answered_groups, self.primary.classes)
        labels = [a["label"] for a in answers]
        key = self.version_key(answered)
        # Feedback names groups by the primary's codes (its tracker's group list),
        # whichever version answered; the decisions are the answering version's.
        self.feedback.record(
            request_id,
            probs,
            key,
            groups,
            decided=answered.decisions(probs, answered_groups),
        )
        self.monitor.observe(records, labels)
        self._refresh_soon(started)
        if self.shadow is not None:
            # After the answer is ready: the shadow never delays or alters it. It runs
            # on this event loop (one forward pass of its own), before the next event.
            asyncio.get_running_loop().call_soon(self._run_shadow, records, primary_labels)
        self.metrics.request(self.name, key, (time.perf_counter() - started) * 1e3, labels)
        return {
            "predictions": answers,
            # The version that answered: a canary that is another model's version is
            # named as itself, never as the primary.
            "model_name": answered.name,
            "model_version": answered.number,
            "request_id": request_id,
        }

    def version_key(self, served: ServedModel) -> str:
        """How metrics and feedback name a version: its number (``"2"``) when it is a
        version of the served model, else its full reference (``"other:1"``)."""
        return str(self._listed(served))

    def _judge(
        self,
        other: ServedModel,
        records: list[dict[str, Any]],
        primary_labels: list[str],
        state: RolloutState | None,
    ) -> tuple[np.ndarray, Groups] | None:
        """Run a canary (``state``) or shadow (None) on records the primary answered;
        record how it did; its probabilities and group codes, or None.

        Nothing it does reaches the client. Any fault of its own (an exception,
        non-finite output, refusing a group value the primary knows) counts as its
        error. Refusing a group value the primary does not know either (the
        primary answers it as an unseen category, while this version's answer
        depends on the group) is the client's value, not its fault: the request
        is not judged (:attr:`unjudged`), and the primary answers.
        """
        started = time.perf_counter()
        try:
            probs, groups, differ = self._run_other(other, records, primary_labels)
        except _NotJudged:
            self.unjudged["shadow" if state is None else "canary"] += 1
            return None
        except Exception:  # any canary/shadow fault is its own error, never the client's
            latency = (time.perf_counter() - started) * 1e3
            obs = Observation(error=True, latency_ms=latency, records=len(records), disagreements=0)
            answer = None
        else:
            latency = (time.perf_counter() - started) * 1e3
            obs = Observation(
                error=False, latency_ms=latency, records=len(records), disagreements=differ
            )
            answer = probs, groups
        if state is None:
            self.shadow_stats.add(obs)
        else:
            entry = state.observe(obs)
            if entry is not None:
                self.metrics.canary(self.name, state.weight)
                self._keep_rollback(entry)
        return answer

    def _run_other(
        self, other: ServedModel, records: list[dict[str, Any]], primary_labels: list[str]
    ) -> tuple[np.ndarray, Groups, int]:
        """A canary's or shadow's probabilities, group codes and disagreements.

        Raises:
            _NotJudged: it refused only group values the primary does not know either.
            Exception: any fault of its own.
        """
        try:
            groups = other.groups(records)
        except RequestError:
            if not self._refuses_a_known_group(other, records):
                raise _NotJudged from None
            raise
        probs = other.probabilities(other.encode(records), groups)
        theirs = other.labels(probs, groups, self.primary.classes)
        differ = sum(a != b for a, b in zip(theirs, primary_labels, strict=True))
        return probs, groups, differ

    def _refuses_a_known_group(self, other: ServedModel, records: list[dict[str, Any]]) -> bool:
        """Whether ``other`` has no group for a record's value that the primary knows
        (as one of its groups, or as a category of that feature)."""
        name = other.schema.sensitive
        if name is None:
            return False
        theirs = other.schema.group_index()
        schema = self.primary.schema
        lookups = []
        if name == schema.sensitive:
            lookups.append(schema.group_index())
        if name in {c.name for c in schema.categorical}:
            lookups.append(schema.value_index(name))
        for record in records:
            if name not in record or theirs.code(record[name]) is not None:
                continue
            if any(index.code(record[name]) is not None for index in lookups):
                return True
        return False

    def _keep_rollback(self, entry: dict[str, Any]) -> None:
        """Write the rollback marker, off the event loop when there is one."""
        if self.rollback_marker is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.rollback_marker.save(entry)
            return
        self.saving = loop.run_in_executor(None, self.rollback_marker.save, entry)

    def _run_shadow(self, records: list[dict[str, Any]], primary_labels: list[str]) -> None:
        assert self.shadow is not None  # scheduled only when there is one
        self._judge(self.shadow, records, primary_labels, None)

    # -- gauges and monitoring routes -------------------------------------------------

    def _refresh_soon(self, now: float) -> None:
        """Note that the windows changed; refresh the gauges now if a refresh is due
        and none is running, else make sure one follows when it is due.

        That trailing refresh (one timer, :attr:`trailing`) is what brings the
        gauges to the current window after the last request of a burst: without
        it they would keep the window of the burst's first request until traffic
        resumed. Nothing is scheduled while nothing changes, so an idle replica
        does no work.
        """
        self._changed_since_gauge = True
        if self.refreshing is not None or self.trailing is not None:
            return  # the running refresh, or the timer, picks the change up
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a caller without an event loop: nothing runs in the background
            return
        wait = self._gauge_at + self.gauge_every_s - now
        if wait > 0:
            self.trailing = loop.call_later(wait, self._trailing_refresh)
            return
        self._start_refresh(loop, now)

    def _trailing_refresh(self) -> None:
        self.trailing = None
        if self.refreshing is None and self._changed_since_gauge:
            self._start_refresh(asyncio.get_running_loop(), time.perf_counter())

    def _start_refresh(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self._gauge_at = now
        self.refreshing = loop.create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            # The snapshots hold every change so far; later ones mark the gauges stale again.
            self._changed_since_gauge = False
            drift = self.monitor.snapshot()
            labelled = self.feedback.snapshot() if self._labelled_since_gauge else None
            self._labelled_since_gauge = False
            report = await asyncio.to_thread(self.monitor.report_of, drift)
            self._drift_gauge(report)
            if labelled is not None:
                self._feedback_gauge(await asyncio.to_thread(self.feedback.summary_of, labelled))
        except Exception:  # a gauge must never take the replica down; say why it is stale
            _log.exception("regtune serve: refreshing the drift/feedback gauges failed")
        finally:
            self.refreshing = None
        if self._changed_since_gauge:  # changes that arrived while it ran (not when cancelled)
            self._refresh_soon(time.perf_counter())

    def _drift_gauge(self, report: dict[str, Any]) -> None:
        if report["drift_index"] is not None:
            self.metrics.drift(self.name, report["drift_index"])

    def _feedback_gauge(self, summary: dict[str, Any]) -> None:
        if summary["n"]:
            self.metrics.feedback(self.name, summary["accuracy"], summary["ece"])

    async def drift(self, name: str) -> dict[str, Any]:
        """``GET /v1/models/{name}/drift`` (computed in a worker thread on a snapshot)."""
        self.check_name(name)
        report = await asyncio.to_thread(self.monitor.report_of, self.monitor.snapshot())
        self._drift_gauge(report)
        return {"model_name": self.name, "model_version": self.primary.number, **report}

    def add_feedback(self, name: str, body: bytes) -> dict[str, Any]:
        """``POST /v1/models/{name}/feedback``: ``{"request_id": ..., "labels": [...]}``.

        Returns ``{"labelled": n}``; the metrics are at ``GET`` (:meth:`feedback_summary`).
        """
        self.check_name(name)
        # As the predict route's validator checks its body (after the name).
        refuse_bom(body)
        refuse_duplicate_keys(body)
        try:
            request = FeedbackRequest.model_validate_json(body)
        except ValueError as exc:
            raise _feedback_error(exc) from None
        labelled = self.feedback.add(request.request_id, request.labels)
        self._labelled_since_gauge = True
        self._refresh_soon(time.perf_counter())
        return {"labelled": labelled}

    async def feedback_summary(self, name: str) -> dict[str, Any]:
        """``GET /v1/models/{name}/feedback`` (computed in a worker thread on a snapshot)."""
        self.check_name(name)
        summary = await asyncio.to_thread(self.feedback.summary_of, self.feedback.snapshot())
        self._feedback_gauge(summary)
        return summary

    def listing(self) -> dict[str, Any]:
        """``GET /v1/models``."""
        return {"models": [self._entry()]}

    def _entry(self) -> dict[str, Any]:
        canary = self.rollout.snapshot()
        return {
            "name": self.name,
            "version": self.primary.number,
            "kind": getattr(self.primary.version, "kind", "single"),
            "canary": {k: canary[k] for k in ("name", "version", "weight", "status")},
            # The shadow's number, or its full reference when it is another model's.
            "shadow": None if self.shadow is None else self._listed(self.shadow),
        }

    def _listed(self, served: ServedModel) -> int | str:
        """How the model list names a version: its number when it is a version of the
        served model, else its full reference (``"other:1"``)."""
        return served.number if served.name == self.name else served.ref

    def describe(self, name: str) -> dict[str, Any]:
        """``GET /v1/models/{name}``: versions, inputs, canary state and rollback log."""
        self.check_name(name)
        shadow = None
        if self.shadow is not None:
            shadow = {
                "name": self.shadow.name,
                "version": self.shadow.number,
                "stats": self.shadow_stats.summary(),
                "unjudged": self.unjudged["shadow"],
            }
        s = self.settings
        return {
            **self._entry(),
            "classes": self.primary.classes,
            "inputs": self._inputs(),
            "metrics": dict(self.primary.version.meta.get("metrics", {})),
            "canary": {**self.rollout.snapshot(), "unjudged": self.unjudged["canary"]},
            "shadow": shadow,
            "batching": {
                "max_batch_size": s.max_batch_size,
                "batch_wait_ms": s.batch_wait_ms,
                "batches": self.batches,
                "mean_batch_requests": self.batched_requests / self.batches
                if self.batches
                else None,
                "lone_requests": self.lone_requests,
            },
            "limits": {
                "max_body_bytes": s.max_body_bytes,
                "body_timeout_s": s.body_timeout_s,
                "max_instances": s.max_instances,
                "unknown_categories": s.unknown_categories,
            },
        }

    def _inputs(self) -> dict[str, str]:
        """Each key a record may hold and what its value may be, as validated: the
        model's inputs, then a sensitive attribute that is not one of them (it only
        names the record's group, so a record may leave it out)."""
        schema = self.primary.schema
        inputs = {name: self.validator.allowed(name) for name in schema.input_names()}
        if schema.sensitive is not None and schema.sensitive not in inputs:
            inputs[schema.sensitive] = self.validator.allowed(schema.sensitive) + LEAVE_OUT
        return inputs

    def health(self) -> dict[str, Any]:
        """``GET /healthz``."""
        return {"status": "ok", "model": self.name, "version": self.primary.number}


class _NotJudged(Exception):
    """A canary or shadow refused a group value the primary does not know either."""


def _feedback_error(exc: ValueError) -> RequestError:
    errors: list[Any] = exc.errors() if isinstance(exc, ValidationError) else []
    if not errors:
        return RequestError(str(exc), status=400, field="body", allowed="a JSON object")
    err = errors[0]
    if err["type"] == "json_invalid":
        return RequestError(
            f"body is not valid JSON ({err['msg'].removeprefix('Invalid JSON: ')})",
            status=400,
            field="body",
            allowed="a JSON object",
        )
    field = ".".join(cut_text(str(p)) for p in err["loc"]) or "body"
    allowed = {
        "request_id": "the request_id string a predict response returned",
        "labels": "a list of class labels, one per instance of that request",
    }.get(str(err["loc"][0]) if err["loc"] else "", '{"request_id": ..., "labels": [...]}')
    return RequestError(
        BAD_FEEDBACK.format(field=field, message=err["msg"]),
        status=422,
        field=field,
        allowed=allowed,
    )


def load_service(
    settings: ServeSettings,
    *,
    forward: Forward | None = None,
    metrics: ServeMetrics | None = None,
    deployment: str | None = None,
) -> ModelService:
    """Load the primary, canary and shadow from the registry and build the service.

    ``deployment`` (an id shared by the replicas of one deployment, see
    :mod:`regtune.serve.markers`) keeps a canary rollback across replica
    restarts; None keeps it in memory only.

    Raises:
        CheckpointError: a version is missing, tampered with or truncated.
        SpecError: a canary or shadow that does not fit the primary.
    """
    from regtune.platform.registry import load_version, registry_root

    root = settings.registry or registry_root(settings.storage)
    primary = load_version(settings.model, root=root)
    refs = {role: settings.ref_for(role, primary.name) for role in ("canary", "shadow")}
    others = {
        role: None if ref is None else load_version(ref, root=root) for role, ref in refs.items()
    }
    canary = others["canary"]
    marker = None
    if deployment is not None and canary is not None:
        marker = RollbackMarker.at(root, primary.name, deployment, int(canary.version))
    return ModelService(
        settings,
        primary,
        canary,
        others["shadow"],
        forward=forward,
        metrics=metrics,
        rollback_marker=marker,
    )
