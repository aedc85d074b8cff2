"""A canary rolled back stays rolled back when its replica restarts (same deployment id),
and only then: a new deployment starts it afresh; an unwritable registry loses nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from regtune.serve.markers import RollbackMarker
from regtune.serve.service import ModelService, load_service
from regtune.serve.settings import ServeSettings
from tests.serve.conftest import MODEL, Registry
from tests.serve.test_service import body, raw_records


def settings(registry: Registry) -> ServeSettings:
    # Canary 4 has NaN weights: every canary request fails, 5 of them roll it back.
    return ServeSettings(model=f"{MODEL}:1", registry=registry.root, canary="4",
                         canary_weight=1.0, min_requests=5, rollout_window=5)  # fmt: skip


def roll_back(service: ModelService, registry: Registry) -> None:
    async def run() -> None:
        for i in range(6):
            answer = await service.predict(MODEL, body(raw_records(registry, 2)), f"rb-{i}")
            assert answer["model_version"] == 1  # the client never sees the failing canary
        assert service.saving is not None
        await service.saving

    asyncio.run(run())


def test_a_rollback_survives_a_replica_restart_of_the_same_deployment(
    registry: Registry,
) -> None:
    deployment = uuid.uuid4().hex
    first = load_service(settings(registry), deployment=deployment)
    assert first.rollout.status == "active"
    roll_back(first, registry)
    assert first.rollout.status == "rolled_back"
    marker = Path(registry.root, MODEL, ".serve", deployment, "canary-v4.json")
    assert json.loads(marker.read_text())["reasons"] == ["error rate 1.000 > 0.05"]

    restarted = load_service(settings(registry), deployment=deployment)
    canary = restarted.describe(MODEL)["canary"]
    assert (canary["status"], canary["weight"]) == ("rolled_back", 0.0)
    (entry,) = canary["rollback_log"]
    assert entry["restored"] is True and entry["version"] == 4
    answer = asyncio.run(restarted.predict(MODEL, body(raw_records(registry, 1)), "after"))
    assert answer["model_version"] == 1 and restarted.rollout.stats.requests == 0

    fresh = load_service(settings(registry), deployment=uuid.uuid4().hex)
    assert fresh.rollout.status == "active"  # a new deployment tries its canary again
    assert load_service(settings(registry)).rollout.status == "active"  # no id: memory only


def test_an_unwritable_or_unreadable_marker_keeps_serving(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    marker = RollbackMarker.at(str(blocker), MODEL, "d", 4)  # a folder under a file
    marker.save({"version": 4})
    assert "cannot write" in caplog.text and "until the replica restarts" in caplog.text
    assert marker.load() is None
    garbled = RollbackMarker.at(str(tmp_path), MODEL, "d", 4)
    garbled.place.write(garbled.file, b"{not json")
    assert garbled.load() is None
    assert "cannot read" in caplog.text


def test_a_marker_nested_too_deeply_is_unreadable_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = RollbackMarker.at(str(tmp_path), MODEL, "d", 4)
    marker.save({"version": 4})
    marker.place.write(marker.file, ("[" * 100_000 + "]" * 100_000).encode())
    assert marker.load() is None
    assert "cannot read" in caplog.text
