"""Feedback: labels joined by request id (matched to classes by canonical value),
metrics checked by hand."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from regtune.platform.registry import Member, save_version
from regtune.serve.feedback import FeedbackTracker
from regtune.serve.http import create_api
from regtune.serve.protocol import RequestError
from regtune.serve.service import load_service
from regtune.serve.settings import ServeSettings
from regtune.trainables.config import DatasetConfig
from regtune.trainables.data import DataWarning, load_dataset
from regtune.trainables.loop import train


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
        ("a", ["no"], 422, "labels", 'labels has 1 entry; request "a" had 3 instances'),
        ("b", ["no", "no"], 422, "labels", 'labels has 2 entries; request "b" had 1 instance,'),
        ("a", ["no", "maybe", "no"], 422, "labels[1]", "expected one of ['no', 'yes']"),
        ("b", [1.5], 422, "labels[0]", "labels[0] is 1.5; expected one of ['no', 'yes']"),
        # Values as the client's JSON wrote them.
        ("b", [None], 422, "labels[0]", "labels[0] is null; expected one of"),
        ("b", [True], 422, "labels[0]", "labels[0] is true; expected one of"),
        ("b", ["maybe"], 422, "labels[0]", 'labels[0] is "maybe"; expected one of'),
        ("b", [["no"]], 422, "labels[0]", 'labels[0] is ["no"]; expected one of'),
        ("c", ["no"], 404, "request_id", 'request_id "c" is not among the last 3'),
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
    if rid == "b" and len(labels) == 2:
        assert info.value.allowed == "a list of 1 label"


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


# -- labels by canonical value ---------------------------------------------------------


def _labelled(classes: list[str], labels: list[Any]) -> list[int]:
    """The class ids ``labels`` were joined as (each record predicted class 0)."""
    t = FeedbackTracker(classes)
    probs = np.tile(np.eye(len(classes))[0], (len(labels), 1))
    t.record("r", probs, version=1)
    assert t.add("r", labels) == len(labels)
    return t.snapshot().labels


def test_a_label_is_matched_by_canonical_value_as_predict_reads_values() -> None:
    # A float 0/1 label: the served classes (str of the raw value) are "0.0" and "1.0";
    # a client's 1, "1", 1.0, "1.0" and " 1 " all name class 1.0, as predict() reads values.
    assert _labelled(["0.0", "1.0"], [1, "1", 1.0, "1.0", " 1 ", 0, "0", 0.0, "0.0"]) == [
        1, 1, 1, 1, 1, 0, 0, 0, 0
    ]  # fmt: skip
    # The reverse: an int label's classes "0" / "1" take 1.0 and "1.0".
    assert _labelled(["0", "1"], [1.0, "1.0", "0.0", 0]) == [1, 1, 0, 0]
    # True/False: JSON true, "true", "FALSE", 1 and "0" (the reading of a True/False column).
    assert _labelled(["False", "True"], [True, "true", "FALSE", 1, "0"]) == [1, 1, 0, 1, 0]
    # Text: outer spaces do not count; case and inner spaces do.
    assert _labelled(["<=50K", ">50K"], [" >50K", "<=50K "]) == [1, 0]
    # Timestamps: a pandas timestamp's str is read as its ISO date.
    assert _labelled(["2020-01-01 00:00:00", "2020-01-02 00:00:00"], ["2020-01-02"]) == [1]
    # Values read once per request are told apart by type: true is not 1 for a number label.
    with pytest.raises(RequestError, match=r"labels\[1\] is true; expected one of"):
        _labelled(["0.0", "1.0"], [1, True])


@pytest.mark.parametrize(
    ("classes", "label", "shown"),
    [
        (["0.0", "1.0"], 2, "2"),
        (["0.0", "1.0"], "2", '"2"'),
        (["0.0", "1.0"], 0.5, "0.5"),
        (["0.0", "1.0"], True, "true"),  # a JSON boolean is no number, as for a category
        (["0.0", "1.0"], float("nan"), "NaN"),
        (["0.0", "1.0"], {"1": 1}, '{"1": 1}'),
        (["False", "True"], "yes", '"yes"'),
        (["<=50K", ">50K"], ">50k", '">50k"'),
    ],
)
def test_a_label_that_matches_no_class_is_refused_naming_the_classes(
    classes: list[str], label: Any, shown: str
) -> None:
    t = FeedbackTracker(classes)
    t.record("r", np.array([[0.5, 0.5], [0.5, 0.5]]), version=1)
    with pytest.raises(RequestError) as info:
        t.add("r", [classes[0], label])
    err = info.value
    assert (err.status, err.field) == (422, "labels[1]")
    assert str(err) == f"labels[1] is {shown}; expected one of {classes}"
    assert err.allowed == f"one of {classes}"
    assert t.summary()["n"] == 0 and not t._pending["r"].labelled


@pytest.mark.parametrize(
    ("classes", "exact", "ambiguous", "words"),
    [
        # "yes" and "yes " are two classes of the model (pandas keeps both values):
        # each is named by its own text, a third spelling of both is refused.
        (["yes", "yes "], ["yes", "yes "], " yes", "send the label exactly as a predict"),
        # A str "1" and a float 1.0 in one object label column.
        (["1", "1.0", "2"], ["1", "1.0"], 1, "send the label exactly as a predict"),
        # An int 1 and a str "1" are written alike: no spelling tells them apart.
        (["1", "1", "2"], [], "1", "no label can tell them apart"),
    ],
)
def test_classes_that_are_one_value_canonically_never_merge(
    classes: list[str], exact: list[str], ambiguous: Any, words: str
) -> None:
    assert _labelled(classes, exact) == list(range(len(exact)))
    t = FeedbackTracker(classes)
    t.record("r", np.array([[0.4, 0.3, 0.3]]) if len(classes) == 3 else np.eye(2)[:1], version=1)
    with pytest.raises(RequestError) as info:
        t.add("r", [ambiguous])
    err = info.value
    assert (err.status, err.field) == (422, "labels[0]")
    assert str(err).startswith(f"labels[0] is {json.dumps(ambiguous)}, which matches 2 classes ")
    assert words in str(err) and err.allowed == f"one of {classes}, exactly as written"
    assert t.summary()["n"] == 0
    # The unambiguous class of the three still takes any spelling.
    if "2" in classes:
        assert _labelled(classes, [2.0, " 2"]) == [2, 2]


def test_a_float_label_model_takes_feedback_by_value_over_http(tmp_path: Path) -> None:
    """End to end, no Ray: a CSV whose 0/1 label reads as floats (one blank cell) is
    trained, registered and served; its answers say "0" / "1" (as for an int label:
    the loader names classes by canonical value), and feedback takes 0/1 however
    the client spells them, refusing others with a 422."""
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=60)
    table = pd.DataFrame({"x1": x1, "y": (x1 > 0).astype(float)})
    table.loc[3, "y"] = np.nan
    table.to_csv(tmp_path / "t.csv", index=False)
    data = {"name": "csv", "path": str(tmp_path / "t.csv"), "label": "y", "features": ["x1"],
            "missing": "drop"}  # fmt: skip
    with pytest.warns(DataWarning, match="dropped 1 of 60 rows"):
        ds = load_dataset(DatasetConfig(**data))
    assert ds.schema.classes == (0, 1)
    config = {"dataset": data, "model": {"arch": "logreg"},
              "training": {"epochs": 1, "batch_size": 64, "robust_every": 0}}  # fmt: skip
    run = train(config, dataset=ds, device="cpu")
    registry = str(tmp_path / "registry")
    save_version("flags", [Member.from_model(run.config, run.model)], ds, root=registry)
    service = load_service(ServeSettings(model="flags:1", registry=registry))
    api = create_api(service, token_sha256=None)
    records = {"instances": [{"x1": 3.0}, {"x1": -3.0}]}
    url = "/v1/models/flags"

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://regtune") as client:
            replies = []
            for rid, labels in (("a", [1, "0"]), ("b", [1.0, "0.0"]), ("c", ["1.0", 2])):
                await client.post(f"{url}:predict", json=records, headers={"x-request-id": rid})
                replies.append(
                    await client.post(f"{url}/feedback", json={"request_id": rid, "labels": labels})
                )
            replies.append(await client.post(f"{url}:predict", json=records))
            replies.append(await client.get(f"{url}/feedback"))
            return replies

    *acks, refused, answer, summary = asyncio.run(scenario())
    assert [a.json() for a in acks] == [{"labelled": 2}, {"labelled": 2}]
    # The served label is the class's canonical value, "1" (not "1.0"), as groups are.
    assert [p["label"] for p in answer.json()["predictions"]] == ["1", "0"]
    assert set(answer.json()["predictions"][0]["probabilities"]) == {"0", "1"}
    assert refused.status_code == 422
    assert refused.json() == {
        "error": "labels[1] is 2; expected one of ['0', '1']",
        "field": "labels[1]",
        "allowed": "one of ['0', '1']",
    }
    assert summary.json()["n"] == 4 and summary.json()["accuracy"] == 1.0
