"""How good are the served predictions? Ground truth joined to them by request id.

Every answered request's probabilities (float32) and answered classes (and the
records' sensitive groups, when the schema has a sensitive attribute) are kept
for the last ``capacity`` requests, and at most ``max_records`` records in all
(the oldest requests go first; the newest request is always kept, even when it
alone is larger). The record cap bounds memory whatever the request sizes: a
record costs 4 bytes per class plus 8 (about 10 MiB at the default 200,000
records of a 10-class model), where 10,000 requests of 1,024 float64 records
used to pin about 1.2 GiB per replica. ``POST /v1/models/{name}/feedback`` later sends one
true label per record of such a request; :class:`FeedbackTracker` joins them
and tracks, over the last ``window`` labelled records:

* ``accuracy`` and ``ece`` (the training loop's definitions:
  :func:`regtune.trainables.metrics.expected_calibration_error`, 15 bins);
* per group: ``n``, ``accuracy`` and ``positive_rate`` (share predicted as the
  second class, for two-class models), with ``accuracy_gap`` and ``dp_gap``
  the largest minus the smallest over groups;
* the same accuracy per serving version (primary, canary), keyed by the version's
  number (``"2"``) when it is a version of the served model, else by its full
  reference (``"other:1"``, a canary given as another model's version).

A label is matched to a class by canonical value, as ``predict()`` reads a
category (:class:`~regtune.trainables.schema.ValueIndex`): ``1``, ``1.0``,
``"1"`` and ``"1.0"`` all name class ``"1"`` of a 0/1 label (or class ``"1.0"``
of a version stored before class names were canonical); ``" yes"`` is ``"yes"``;
``"true"`` is True for a True/False label. Two classes that are one value
canonically (a version stored before the data loader merged ``"yes"`` and
``"yes "``) are never merged here: each
is named by its exact text as the predict response wrote it, and a label
matching both in any other spelling is refused.

A request can be labelled once; an unknown or evicted id, a wrong count or a
label that matches no class (or two) is refused with the field and what is allowed.
A request id used again while its first prediction is still kept (a client
retry) keeps that first entry: feedback joins the first answer, and an id
already labelled stays labelled.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from regtune.serve.protocol import RequestError, shown_value
from regtune.serve.settings import DEFAULT_FEEDBACK_RECORDS
from regtune.trainables.metrics import expected_calibration_error
from regtune.trainables.schema import ValueIndex, legacy_canonical

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_FEEDBACK_RECORDS",
    "DEFAULT_FEEDBACK_WINDOW",
    "FeedbackTracker",
    "LabelledWindow",
]

#: Requests whose predictions are kept for later labels.
DEFAULT_CAPACITY = 10_000
#: Labelled records the metrics are computed over.
DEFAULT_FEEDBACK_WINDOW = 10_000

UNKNOWN_REQUEST = (
    "request_id {rid} is not among the last {capacity} predictions of this model "
    "(at most {records} records are kept); "
    "send feedback with the request_id a recent predict response returned"
)
ALREADY_LABELLED = "request_id {rid} already has feedback; each request is labelled once"
WRONG_COUNT = "labels has {got}; request {rid} had {want}, one label each"
UNKNOWN_LABEL = "labels[{index}] is {value}; expected one of {classes}"
SAME_CLASS = (
    "labels[{index}] is {value}, which matches {n} classes {matched}: one value "
    "({canonical!r}) once written canonically (integral floats as integers, strings NFC "
    "without outer spaces); "
)
#: How to name one of those classes: by its own text, when their texts differ.
SEND_EXACT = "send the label exactly as a predict response wrote it"
#: ... or not at all, when they are written alike (an int 1 and a str "1").
CANNOT_TELL = (
    "no label can tell them apart (they are written alike); make them one value in the "
    "training data"
)


@dataclass(frozen=True)
class LabelledWindow:
    """A copy of a tracker's labelled records: probabilities, true and decided class
    ids, group codes and the versions that answered."""

    probs: list[np.ndarray]
    labels: list[int]
    decided: list[int]
    groups: list[int | None]
    versions: list[str]


@dataclass(slots=True)
class _Pending:
    probs: np.ndarray  # (n, C) float32
    decided: np.ndarray  # (n,) int32 class ids
    groups: np.ndarray | None  # (n,) int32 group codes, -1 for none
    version: str
    labelled: bool = False


class FeedbackTracker:
    """Predictions awaiting labels and metrics over the labelled ones; see the module docstring."""

    def __init__(
        self,
        classes: Sequence[str],
        groups: Sequence[str] = (),
        *,
        capacity: int = DEFAULT_CAPACITY,
        max_records: int = DEFAULT_FEEDBACK_RECORDS,
        window: int = DEFAULT_FEEDBACK_WINDOW,
    ) -> None:
        self.classes = [str(c) for c in classes]
        self.groups = [str(g) for g in groups]
        self._labels_of = _LabelIndex(self.classes)
        self.capacity = capacity
        self.max_records = max_records
        self._kept_records = 0
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._probs: deque[np.ndarray] = deque(maxlen=window)
        self._labels: deque[int] = deque(maxlen=window)
        self._decided: deque[int] = deque(maxlen=window)
        self._group: deque[int | None] = deque(maxlen=window)
        self._version: deque[str] = deque(maxlen=window)

    def record(
        self,
        request_id: str,
        probs: np.ndarray,
        version: int | str,
        groups: list[int | None] | None = None,
        decided: np.ndarray | None = None,
    ) -> None:
        """Keep one answered request's ``(n, C)`` probabilities for later feedback.

        ``version`` names the answering version: its number, or ``"name:N"`` for
        another model's version (the key of ``versions`` in :meth:`summary`).
        ``decided`` are the class ids the response answered (a version with
        per-group thresholds does not answer the arg-max); None means the arg-max.
        Accuracy and group rates are scored on them, ECE on ``probs``. An id
        already kept keeps its first entry (nothing changes)."""
        if request_id in self._pending:  # a reused id keeps its first answer (module docstring)
            return
        probs = np.asarray(probs, dtype=np.float32)
        ids = probs.argmax(axis=1) if decided is None else np.asarray(decided)
        codes = None if groups is None else np.array([-1 if g is None else g for g in groups])
        self._pending[request_id] = _Pending(
            probs,
            ids.astype(np.int32),
            None if codes is None else codes.astype(np.int32),
            str(version),
        )
        self._kept_records += probs.shape[0]
        while len(self._pending) > 1 and (
            len(self._pending) > self.capacity or self._kept_records > self.max_records
        ):
            _, oldest = self._pending.popitem(last=False)
            self._kept_records -= oldest.probs.shape[0]

    @property
    def kept_records(self) -> int:
        """Records (instances) of the kept requests: at most ``max_records``, unless
        the newest request alone is larger."""
        return self._kept_records

    @property
    def kept_requests(self) -> int:
        """Requests kept for feedback: at most ``capacity``."""
        return len(self._pending)

    def add(self, request_id: str, labels: Sequence[Any]) -> int:
        """Join true ``labels`` (raw class values, one per record) to a request; returns how many.

        Each label is matched to a class by canonical value (module docstring).

        Raises:
            RequestError: 404 for an unknown id, 409 when already labelled, 422
                for a wrong count, a label that matches no class, or one that
                matches two classes that are one value canonically.
        """
        pending = self._pending.get(request_id)
        if pending is None:
            raise RequestError(
                UNKNOWN_REQUEST.format(
                    rid=_quoted(request_id), capacity=self.capacity, records=self.max_records
                ),
                status=404,
                field="request_id",
                allowed="a request_id returned by a recent predict call",
            )
        if pending.labelled:
            raise RequestError(
                ALREADY_LABELLED.format(rid=_quoted(request_id)), status=409, field="request_id",
                allowed="a request_id without feedback yet",
            )  # fmt: skip
        n = pending.probs.shape[0]
        if len(labels) != n:
            raise RequestError(
                WRONG_COUNT.format(
                    got=_count(len(labels), "entry", "entries"),
                    rid=_quoted(request_id),
                    want=_count(n, "instance"),
                ),
                status=422,
                field="labels",
                allowed=f"a list of {_count(n, 'label')}",
            )
        ids = self._labels_of.codes(labels)
        pending.labelled = True
        groups: list[int | None] = (
            [None if g < 0 else g for g in pending.groups.tolist()]
            if pending.groups is not None
            else [None] * n
        )
        for row, decided, label, group in zip(
            pending.probs, pending.decided.tolist(), ids, groups, strict=True
        ):
            self._probs.append(row)
            self._decided.append(decided)
            self._labels.append(label)
            self._group.append(group)
            self._version.append(pending.version)
        return n

    def snapshot(self) -> LabelledWindow:
        """The labelled window, copied (O(window) references): :meth:`summary_of` can then
        run in another thread while this tracker keeps recording."""
        return LabelledWindow(
            list(self._probs), list(self._labels), list(self._decided), list(self._group),
            list(self._version),
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """Metrics over the labelled window (``n`` 0: every metric None)."""
        return self.summary_of(self.snapshot())

    def summary_of(self, window: LabelledWindow) -> dict[str, Any]:
        """:meth:`summary` of a :meth:`snapshot` (reads only immutable state)."""
        n = len(window.labels)
        out: dict[str, Any] = {
            "n": n,
            "accuracy": None,
            "ece": None,
            "groups": {},
            "accuracy_gap": None,
            "dp_gap": None,
            "versions": {},
        }
        if n == 0:
            return out
        probs = np.stack(window.probs).astype(np.float64)
        labels = np.asarray(window.labels)
        predicted = np.asarray(window.decided)
        correct = predicted == labels
        out["accuracy"] = float(correct.mean())
        out["ece"] = expected_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels))
        versions = np.asarray(window.versions, dtype=object)
        for v in sorted(set(window.versions), key=_version_order):
            mask = versions == v
            out["versions"][v] = {
                "n": int(mask.sum()),
                "accuracy": float(correct[mask].mean()),
            }
        groups = np.asarray([-1 if g is None else g for g in window.groups])
        for code, name in enumerate(self.groups):
            mask = groups == code
            if not mask.any():
                continue
            entry: dict[str, Any] = {"n": int(mask.sum()), "accuracy": float(correct[mask].mean())}
            if len(self.classes) == 2:
                entry["positive_rate"] = float((predicted[mask] == 1).mean())
            out["groups"][name] = entry
        if len(out["groups"]) >= 2:
            accs = [g["accuracy"] for g in out["groups"].values()]
            out["accuracy_gap"] = max(accs) - min(accs)
            if len(self.classes) == 2:
                rates = [g["positive_rate"] for g in out["groups"].values()]
                out["dp_gap"] = max(rates) - min(rates)
        return out


def _quoted(request_id: str) -> str:
    """A request id as JSON writes it (``"order-1234"``), whole: it is at most
    :data:`~regtune.serve.protocol.MAX_REQUEST_ID_CHARS` characters."""
    return json.dumps(request_id, ensure_ascii=False)


def _count(n: int, one: str, many: str | None = None) -> str:
    """``"1 label"``, ``"2 labels"``."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def _version_order(key: str) -> tuple[bool, int, str]:
    """The served model's own versions by number, then other models' references."""
    return (not key.isdigit(), int(key) if key.isdigit() else 0, key)


class _LabelIndex:
    """The class id a feedback label names: its exact text as answered, else its
    canonical value read as ``predict()`` reads a category (``ValueIndex``)."""

    def __init__(self, classes: list[str]) -> None:
        self.classes = classes
        # Canonical names; a version stored earlier holds str(raw value) ("1.0" is 1).
        self.names = [legacy_canonical(c) for c in classes]
        self._by_name: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            self._by_name.setdefault(name, []).append(i)
        self._known = list(self._by_name)
        # Distinct names, so this lookup cannot refuse them; it only reads spellings.
        self._values = ValueIndex(self._known, legacy=False, what="feedback labels")
        self._exact: dict[str, list[int]] = {}
        for i, text in enumerate(classes):
            self._exact.setdefault(text, []).append(i)

    def codes(self, labels: Sequence[Any]) -> list[int]:
        """:meth:`code` of each label; a value met before in ``labels`` is not read again
        (keyed by type too: ``1``, ``1.0`` and ``True`` are equal keys in a dict)."""
        out = []
        seen: dict[tuple[type, Any], int] = {}
        for i, value in enumerate(labels):
            key = (type(value), value)
            try:
                hit = seen.get(key)
            except TypeError:  # a list or an object: code() refuses it
                hit = None
            if hit is None:
                hit = self.code(i, value)
                if isinstance(value, str | int | float):
                    seen[key] = hit
            out.append(hit)
        return out

    def code(self, index: int, value: Any) -> int:
        """The class id of ``labels[index]``.

        Raises:
            RequestError: 422 naming ``labels[index]``: it matches no class, or
                several that are one value canonically.
        """
        # A class is a string, or the number / bool its raw value was: null, a list or
        # an object is no class, even when its text would match one.
        hits: list[int] = []
        if isinstance(value, str):
            hits = self._exact.get(value, [])
        if not hits and isinstance(value, str | int | float):
            code = self._values.code(value)
            hits = [] if code is None else self._by_name[self._known[code]]
        if len(hits) == 1:
            return hits[0]
        shown = shown_value(value)
        if not hits:
            raise RequestError(
                UNKNOWN_LABEL.format(index=index, value=shown, classes=self.classes),
                status=422,
                field=f"labels[{index}]",
                allowed=f"one of {self.classes}",
            )
        matched = [self.classes[i] for i in hits]
        alike = len(set(matched)) < len(matched)
        raise RequestError(
            SAME_CLASS.format(
                index=index,
                value=shown,
                n=len(hits),
                matched=matched,
                canonical=self.names[hits[0]],
            )
            + (CANNOT_TELL if alike else SEND_EXACT),
            status=422,
            field=f"labels[{index}]",
            allowed=f"one of {self.classes}, exactly as written",
        )
