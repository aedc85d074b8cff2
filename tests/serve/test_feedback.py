"""Feedback: labels joined by request id, metrics checked by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from regtune.serve.feedback import FeedbackTracker
from regtune.serve.protocol import RequestError


def tracker() -> FeedbackTracker:
    t = FeedbackTracker(["no", "yes"], ["F", "M"], capacity=3)
    t.record("a", np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), version=1, groups=[0, 1, 1])
    t.record("b", np.array([[0.3, 0.7]]), version=2, groups=[0])
    return t


def test_metrics_match_a_hand_computation() -> None:
    t = tracker()
    assert t.summary()["n"] == 0
    assert t.add("a", ["no", "yes", "yes"]) == 3
    assert t.add("b", ["no"]) == 1
    s = t.summary()
    # predicted: no, yes, no, yes; true: no, yes, yes, no -> 2 of 4 right.
    assert s["n"] == 4
    assert s["accuracy"] == 0.5
    # ECE, 15 bins: confidences 0.9 (right), 0.8 (right), 0.6 (wrong), 0.7 (wrong),
    # each alone in its bin: (0.1 + 0.2 + 0.6 + 0.7) / 4.
    assert s["ece"] == pytest.approx((0.1 + 0.2 + 0.6 + 0.7) / 4)
    # F: rows 0 (right, predicted no) and 3 (wrong, predicted yes); M: rows 1, 2.
    assert s["groups"] == {
        "F": {"n": 2, "accuracy": 0.5, "positive_rate": 0.5},
        "M": {"n": 2, "accuracy": 0.5, "positive_rate": 0.5},
    }
    assert (s["accuracy_gap"], s["dp_gap"]) == (0.0, 0.0)
    assert s["versions"] == {"1": {"n": 3, "accuracy": 2 / 3}, "2": {"n": 1, "accuracy": 0.0}}


def test_thresholded_answers_are_scored_as_answered_not_by_arg_max() -> None:
    t = FeedbackTracker(["no", "yes"], ["F", "M"], capacity=3)
    probs = np.array([[0.6, 0.4], [0.6, 0.4]])
    # A per-group threshold of 0.35 for F answered "yes" on row 0; M kept the arg-max.
    t.record("a", probs, version=1, groups=[0, 1], decided=np.array([1, 0]))
    t.add("a", ["yes", "yes"])
    s = t.summary()
    assert s["accuracy"] == 0.5  # the arg-max ("no", "no") would score 0
    assert s["groups"]["F"] == {"n": 1, "accuracy": 1.0, "positive_rate": 1.0}
    assert s["groups"]["M"] == {"n": 1, "accuracy": 0.0, "positive_rate": 0.0}
    assert s["dp_gap"] == 1.0
    # ECE stays a property of the probabilities: arg-max confidence 0.6, never right.
    assert s["ece"] == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("rid", "labels", "status", "field", "words"),
    [
        ("zzz", ["no"], 404, "request_id", "not among the last 3 predictions"),
        ("a", ["no"], 422, "labels", "labels has 1 entries; request 'a' had 3 instances"),
        ("a", ["no", "maybe", "no"], 422, "labels[1]", "expected one of ['no', 'yes']"),
        ("b", [1.5], 422, "labels[0]", "labels[0] is 1.5; expected one of ['no', 'yes']"),
        ("b", [None], 422, "labels[0]", "labels[0] is None; expected one of"),
        ("b", [["no"]], 422, "labels[0]", "labels[0] is ['no']; expected one of"),
    ],
)
def test_bad_feedback_is_refused(
    rid: str, labels: list[Any], status: int, field: str, words: str
) -> None:
    t = tracker()
    with pytest.raises(RequestError) as info:
        t.add(rid, labels)
    assert (info.value.status, info.value.field) == (status, field)
    assert words in str(info.value)
    assert t.summary()["n"] == 0


def test_each_request_is_labelled_once_and_old_ones_are_evicted() -> None:
    t = tracker()
    t.add("b", ["yes"])
    with pytest.raises(RequestError, match="already has feedback") as info:
        t.add("b", ["yes"])
    assert info.value.status == 409
    for rid in ("c", "d"):
        t.record(rid, np.array([[0.5, 0.5]]), version=1)
    with pytest.raises(RequestError, match="not among the last 3"):
        t.add("a", ["no", "no", "no"])


def test_a_reused_request_id_keeps_its_first_answer_and_stays_labelled_once() -> None:
    t = tracker()
    t.record("b", np.array([[0.9, 0.1], [0.9, 0.1]]), version=1)  # a retry, another answer
    assert t.add("b", ["yes"]) == 1  # joined to the first answer: one record, version 2
    assert t.summary()["versions"] == {"2": {"n": 1, "accuracy": 1.0}}
    t.record("b", np.array([[0.5, 0.5]]), version=1)
    with pytest.raises(RequestError, match="already has feedback") as info:
        t.add("b", ["yes"])
    assert info.value.status == 409
    assert t.summary()["n"] == 1


def test_kept_records_are_capped_however_large_the_requests() -> None:
    t = FeedbackTracker([str(c) for c in range(10)], max_records=5000)
    probs = np.random.default_rng(0).random((1024, 10))
    for i in range(50):  # 51,200 records sent
        t.record(f"r{i}", probs, version=1, groups=[None] * 1024)
        assert t.kept_records <= 5000
    # the newest 4 requests (4,096 records) are kept; a fifth would pass 5,000
    assert (t.kept_requests, t.kept_records) == (4, 4096)
    assert t.add("r49", ["0"] * 1024) == 1024
    with pytest.raises(RequestError, match="not among the last 10000 predictions") as info:
        t.add("r45", ["0"] * 1024)
    assert "at most 5000 records are kept" in str(info.value)
    kept = t._pending["r48"]
    assert kept.probs.dtype == np.float32 and kept.probs.nbytes == 1024 * 10 * 4


def test_a_request_larger_than_the_cap_is_kept_alone() -> None:
    t = FeedbackTracker(["no", "yes"], max_records=2)
    t.record("small", np.array([[0.9, 0.1]]), version=1)
    t.record("big", np.array([[0.9, 0.1]] * 3), version=1)
    assert (t.kept_requests, t.kept_records) == (1, 3)
    assert t.add("big", ["no", "no", "yes"]) == 3
