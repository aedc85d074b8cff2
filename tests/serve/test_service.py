"""The service without a web framework: a lone request skips the batcher, concurrent ones
share batches, and either way the answers are the in-process model's (groups included)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from regtune.errors import SpecError
from regtune.platform.registry.postprocess import PostProcessing
from regtune.serve.predictor import ModelOutputError
from regtune.serve.protocol import RequestError
from regtune.serve.service import ModelService, Rows, load_service
from regtune.serve.settings import ServeSettings
from regtune.trainables.schema import FeatureSchema
from tests.serve.conftest import MODEL, Registry

if TYPE_CHECKING:
    from regtune.platform.registry import ModelVersion


class LoopBatcher:
    """``@serve.batch`` at wait 0 without Ray: what queued during one pass of the
    event loop is one batch (Serve's batcher needs a replica context)."""

    def __init__(self) -> None:
        self.service: ModelService | None = None
        self.pending: list[tuple[Rows, asyncio.Future[np.ndarray]]] = []
        self.sizes: list[int] = []

    async def __call__(self, rows: Rows) -> np.ndarray:
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self.pending.append((rows, future))
        if len(self.pending) == 1:
            asyncio.get_running_loop().call_soon(self.flush)
        return await future

    def flush(self) -> None:
        assert self.service is not None
        items, self.pending = self.pending, []
        self.sizes.append(len(items))
        try:
            outs = self.service.forward_batch([rows for rows, _ in items])
        except Exception as exc:  # as Serve's batcher does: every caller gets the error
            for _, future in items:
                future.set_exception(exc)
            return
        for (_, future), out in zip(items, outs, strict=True):
            future.set_result(out)


def raw_records(registry: Registry, n: int, start: int = 0) -> list[dict[str, Any]]:
    schema = registry.dataset.schema
    names = [*schema.input_names(), *([schema.sensitive] if schema.sensitive else [])]
    rows = registry.dataset.raw_test.iloc[start : start + n][list(dict.fromkeys(names))]
    return list(json.loads(rows.to_json(orient="records")))


def body(records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"instances": records}).encode()


def expected(service: ModelService, records: list[dict[str, Any]]) -> np.ndarray:
    return service.primary.predict(records)


def got(answer: dict[str, Any], classes: list[str]) -> np.ndarray:
    return np.array([[p["probabilities"][c] for c in classes] for p in answer["predictions"]])


def test_a_lone_request_skips_the_batcher_and_concurrent_ones_share_batches(
    registry: Registry,
) -> None:
    batcher = LoopBatcher()
    service = load_service(
        ServeSettings(model=f"{MODEL}:1", registry=registry.root), forward=batcher
    )
    batcher.service = service
    classes = service.primary.classes
    assert service.primary.schema.sensitive is not None  # groups travel with the rows

    async def run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        lone = await service.predict(MODEL, body(raw_records(registry, 3)), "lone")
        many = await asyncio.gather(
            *(
                service.predict(MODEL, body(raw_records(registry, 1 + i % 3, 10 * i)), f"r{i}")
                for i in range(8)
            )
        )
        return lone, list(many)

    lone, many = asyncio.run(run())
    assert service.lone_requests == 1
    assert (service.batches, service.batched_requests) == (1, 8)
    assert batcher.sizes == [8]
    np.testing.assert_allclose(got(lone, classes), expected(service, raw_records(registry, 3)))
    for i, answer in enumerate(many):
        records = raw_records(registry, 1 + i % 3, 10 * i)
        np.testing.assert_allclose(got(answer, classes), expected(service, records), rtol=1e-6)
        labels = service.primary.labels(expected(service, records), service.primary.groups(records))
        assert [p["label"] for p in answer["predictions"]] == labels
    described = service.describe(MODEL)["batching"]
    assert described["lone_requests"] == 1 and described["mean_batch_requests"] == 8.0
    # Feedback keeps each request's groups: the summary sees every labelled record.
    truth = [str(v) for v in registry.dataset.raw_test.iloc[0:3][registry.dataset.schema.label]]
    added = service.add_feedback(
        MODEL, json.dumps({"request_id": "lone", "labels": truth}).encode()
    )
    assert added["labelled"] == 3


def test_without_a_batcher_every_request_runs_directly(registry: Registry) -> None:
    service = load_service(ServeSettings(model=f"{MODEL}:1", registry=registry.root))

    async def run() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                *(
                    service.predict(MODEL, body(raw_records(registry, 2, i)), f"d{i}")
                    for i in range(4)
                )
            )
        )

    answers = asyncio.run(run())
    assert (service.batches, service.lone_requests) == (0, 0)
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(
            got(answer, service.primary.classes), expected(service, raw_records(registry, 2, i))
        )


def test_a_request_with_non_finite_output_fails_alone_and_its_batch_mates_are_answered(
    registry: Registry,
) -> None:
    batcher = LoopBatcher()
    service = load_service(
        ServeSettings(model=f"{MODEL}:1", registry=registry.root), forward=batcher
    )
    batcher.service = service
    records = raw_records(registry, 2)
    groups = service.primary.groups(records)
    good = service.primary.encode(records)
    bad = good.clone()
    bad[1, 0] = float("inf")  # what an input beyond float32 would have become

    async def run() -> list[Any]:
        return list(
            await asyncio.gather(
                service._forward(good, groups),
                service._forward(bad, groups),
                service._forward(good, groups),
                return_exceptions=True,
            )
        )

    first, failed, third = asyncio.run(run())
    assert batcher.sizes == [3]
    assert isinstance(failed, ModelOutputError)
    assert "non-finite probabilities for 1 of 2 records" in str(failed)
    for answer in (first, third):
        np.testing.assert_allclose(answer, expected(service, records), rtol=1e-6)


def test_the_feedback_cap_is_the_served_settings(registry: Registry) -> None:
    settings = ServeSettings(model=f"{MODEL}:1", registry=registry.root, feedback_records=123)
    assert load_service(settings).feedback.max_records == 123


def regrouped(
    version: ModelVersion, groups: Sequence[str], thresholds: Sequence[float] | None = None
) -> ModelVersion:
    """``version`` whose sensitive attribute has ``groups`` (and per-group thresholds)."""
    raw = json.loads(version.schema.to_json())
    raw["sensitive_values"] = list(groups)
    schema = FeatureSchema.from_json(json.dumps(raw))
    post = (
        None if thresholds is None else PostProcessing(tuple(groups), thresholds=tuple(thresholds))
    )
    return dataclasses.replace(version, schema=schema, postprocessing=post)


def with_other(registry: Registry, role: str, other: ModelVersion) -> ModelService:
    """Primary 1 (no post-processing; ``sex`` is a feature and its groups) and ``other``
    as canary (every request) or shadow."""
    if role == "canary":
        config = ServeSettings(
            model=f"{MODEL}:1", registry=registry.root, canary="2", canary_weight=1.0
        )
        return ModelService(config, registry.versions["primary"], canary=other)
    config = ServeSettings(model=f"{MODEL}:1", registry=registry.root)
    return ModelService(config, registry.versions["primary"], shadow=other)


def ask(service: ModelService, records: list[dict[str, Any]], rid: str) -> dict[str, Any]:
    """One predict request, with the shadow (scheduled after the answer) run too."""

    async def run() -> dict[str, Any]:
        answer = await service.predict(MODEL, body(records), rid)
        await asyncio.sleep(0)  # the shadow's turn on the loop
        return answer

    return asyncio.run(run())


def judged(service: ModelService, role: str) -> dict[str, Any]:
    stats = service.describe(MODEL)[role]
    return {"unjudged": stats["unjudged"], **stats["stats"]}


@pytest.mark.parametrize("role", ["canary", "shadow"])
def test_a_group_the_primary_knows_and_the_other_version_does_not_is_its_error(
    registry: Registry, role: str
) -> None:
    # The other version decides by per-group thresholds and knows only "Male".
    service = with_other(registry, role, regrouped(registry.versions["canary"], ["Male"], [0.5]))
    records = raw_records(registry, 5)
    assert {r["sex"] for r in records} == {"Male", "Female"}
    answer = ask(service, records, "r-female")
    # The client is answered, by the primary, exactly as the primary alone answers.
    assert answer["model_version"] == 1
    np.testing.assert_allclose(got(answer, service.primary.classes), expected(service, records))
    stats = judged(service, role)
    assert (stats["requests"], stats["errors"], stats["unjudged"]) == (1, 1, 0)
    # Records of its own group only: judged, no error, and a canary answers them.
    males = [r for r in raw_records(registry, 40) if r["sex"] == "Male"][:5]
    answer = ask(service, males, "r-male")
    assert answer["model_version"] == (2 if role == "canary" else 1)
    stats = judged(service, role)
    assert (stats["requests"], stats["errors"], stats["unjudged"]) == (2, 1, 0)


@pytest.mark.parametrize("role", ["canary", "shadow"])
def test_a_group_value_the_primary_does_not_know_either_is_not_the_other_versions_error(
    registry: Registry, role: str
) -> None:
    service = with_other(
        registry, role, regrouped(registry.versions["canary"], ["Female", "Male"], [0.4, 0.6])
    )
    # "Other" is no sex the primary knows: it answers it as an unseen category.
    records = [
        {**r, "sex": "Other"} if i == 2 else r for i, r in enumerate(raw_records(registry, 4))
    ]
    assert service.primary.groups(records) == [1, 1, None, 1]
    answer = ask(service, records, "r-other")
    assert answer["model_version"] == 1
    np.testing.assert_allclose(got(answer, service.primary.classes), expected(service, records))
    stats = judged(service, role)
    assert (stats["requests"], stats["errors"], stats["unjudged"]) == (0, 0, 1)
    # A respelt group is known to both: judged as usual.
    respelt = [{**r, "sex": " Female "} for r in raw_records(registry, 3)]
    ask(service, respelt, "r-respelt")
    stats = judged(service, role)
    assert (stats["requests"], stats["errors"], stats["unjudged"]) == (1, 0, 1)


def test_a_canary_that_fails_is_its_error_and_the_client_gets_the_primary(
    registry: Registry,
) -> None:
    service = with_other(registry, "canary", registry.versions["broken"])
    answer = ask(service, raw_records(registry, 3), "r-broken")
    assert answer["model_version"] == 1
    assert judged(service, "canary")["errors"] == 1


def test_feedback_names_groups_by_the_primary_whichever_version_answered(
    registry: Registry,
) -> None:
    # The canary lists the same groups in the other order: its code 0 is "Male".
    canary = regrouped(registry.versions["canary"], ["Male", "Female"])
    service = with_other(registry, "canary", canary)
    records = raw_records(registry, 5)
    answer = ask(service, records, "r-fb")
    assert answer["model_version"] == 2
    truth = [str(v) for v in registry.dataset.raw_test.iloc[0:5][registry.dataset.schema.label]]
    service.add_feedback(MODEL, json.dumps({"request_id": "r-fb", "labels": truth}).encode())
    groups = asyncio.run(service.feedback_summary(MODEL))["groups"]
    sexes = [r["sex"] for r in records]
    assert {name: g["n"] for name, g in groups.items()} == {
        "Female": sexes.count("Female"),
        "Male": sexes.count("Male"),
    }


def test_the_served_drift_window_knows_the_categories_the_model_knows(
    registry: Registry,
) -> None:
    settings = ServeSettings(
        model=f"{MODEL}:1", registry=registry.root, drift_window=20, drift_min_window=20
    )
    service = ModelService(settings, registry.versions["primary"])
    records = raw_records(registry, 20)
    # Spelt as a client may: outer spaces, which the model's encoder reads as the category.
    respelt = [{**r, "sex": f" {r['sex']} ", "race": f"{r['race']}  "} for r in records]
    np.testing.assert_array_equal(service.primary.encode(respelt), service.primary.encode(records))
    ask(service, respelt, "r-drift")
    report = asyncio.run(service.drift(MODEL))
    assert report["ready"]
    for name in ("sex", "race"):
        assert report["features"][name]["unseen_share"] == 0.0


@pytest.mark.parametrize("role", ["canary", "shadow"])
def test_class_names_spelt_another_way_are_the_same_classes(registry: Registry, role: str) -> None:
    # A version stored before class names were canonical answers "1.0" where a newer
    # one answers "1"; here the other version's names carry stray spaces instead.
    plain = registry.versions["canary"]
    respelt = dataclasses.replace(plain, classes=[f" {c} " for c in plain.classes])
    primary = [str(c) for c in registry.versions["primary"].classes]
    records = raw_records(registry, 120)
    seen = []
    for other in (plain, respelt):
        service = with_other(registry, role, other)
        answer = ask(service, records, f"r-{len(seen)}")
        # Clients, drift and metrics see the primary's names whichever version answered.
        assert {p["label"] for p in answer["predictions"]} <= set(primary)
        assert all(list(p["probabilities"]) == primary for p in answer["predictions"])
        seen.append(
            (
                service.describe(MODEL)[role]["stats"]["disagreement"],
                service.monitor.report()["prediction_psi"],
            )
        )
    # Disagreement is about the decisions, not the spelling (not 1.0 for every record),
    # and the drift monitor places the respelt answers in the classes it knows.
    assert seen[1] == seen[0] and seen[0][0] < 1.0 and seen[0][1] is not None


@pytest.mark.parametrize("role", ["canary", "shadow"])
def test_the_same_classes_in_another_order_are_refused(registry: Registry, role: str) -> None:
    # Class ids differ (e.g. one version trained with positive_label: no): its
    # probabilities and decisions, read by position, would swap the classes.
    plain = registry.versions["canary"]
    other = dataclasses.replace(plain, classes=list(reversed(plain.classes)))
    with pytest.raises(SpecError, match=f"a {role} must decide between the same classes"):
        with_other(registry, role, other)


@pytest.mark.parametrize("role", ["canary", "shadow"])
def test_a_version_deciding_between_other_classes_is_refused(registry: Registry, role: str) -> None:
    other = dataclasses.replace(registry.versions["canary"], classes=["no", "yes"])
    with pytest.raises(SpecError) as info:
        with_other(registry, role, other)
    primary = registry.versions["primary"].classes
    assert str(info.value) == (
        f"{role} {MODEL}:{other.version} decides between classes ['no', 'yes'], the primary "
        f"{MODEL}:1 between {[str(c) for c in primary]}; a {role} must decide between the same "
        "classes"
    )


@pytest.mark.parametrize("thresholds", [None, (0.3, 0.6)])
def test_a_sensitive_attribute_that_is_no_feature_is_described_as_an_optional_input(
    registry: Registry, thresholds: tuple[float, float] | None
) -> None:
    """A record may send it (it must be one of the groups) or leave it out; the
    description lists it after the features and says both."""
    primary = registry.versions["primary"]
    raw = json.loads(primary.schema.to_json())
    raw.update(sensitive="group", sensitive_values=["a", "b"])
    schema = FeatureSchema.from_json(json.dumps(raw))
    post = None if thresholds is None else PostProcessing(("a", "b"), thresholds=thresholds)
    version = dataclasses.replace(primary, schema=schema, postprocessing=post)
    assert "group" not in schema.input_names()
    service = ModelService(ServeSettings(model=f"{MODEL}:1", registry=registry.root), version)
    inputs = service.describe(MODEL)["inputs"]
    assert list(inputs) == [*schema.input_names(), "group"]
    assert inputs["group"] == (
        "one of ['a', 'b'] (or leave it out for the answer without per-group adjustment)"
    )
    records = raw_records(registry, 2)
    sent = [{**records[0], "group": "b"}, records[1]]
    assert len(ask(service, sent, "grouped")["predictions"]) == 2


def test_a_long_unknown_feedback_key_is_cut_and_the_body_deadline_is_described(
    registry: Registry,
) -> None:
    service = load_service(ServeSettings(model=f"{MODEL}:1", registry=registry.root))
    key = "k" * 200_000
    with pytest.raises(RequestError) as caught:
        service.add_feedback(
            MODEL, json.dumps({"request_id": "r", "labels": ["x"], key: 1}).encode()
        )
    assert caught.value.status == 422
    assert len(caught.value.field) < 100 and len(str(caught.value)) < 1_000
    assert caught.value.field.startswith("kkk") and caught.value.field.endswith("...")
    limits = service.describe(MODEL)["limits"]
    assert limits["body_timeout_s"] == service.settings.body_timeout_s
