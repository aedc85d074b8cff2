"""A trial asking for more CPUs/GPUs than there are: refused on the local Ray
regtune starts (it would wait for ever), a warning when joining a cluster
(it may add a node that fits)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import ray

from regtune.errors import SpecError
from regtune.platform.tune import sweep
from regtune.platform.tune.runtime import check_trial_fits_machine, trial_fits_cluster
from regtune.search_spaces import load_spec
from tests.platform.tune.stubs import TINY_SPEC


class _Stop(Exception):
    """Raised where the sweep would go on to build its trials."""


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A Ray of 2 CPUs and no GPU on this machine, one node of 4 CPUs and
    1 GPU (and a dead one of 8 GPUs) on a cluster; nothing really starts."""
    seen: dict[str, Any] = {"ensure_ray": [], "shutdown": 0}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "memory": 1e9})
    nodes = [
        {"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}},
        {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
    ]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)

    def shutdown() -> None:
        seen["shutdown"] += 1

    monkeypatch.setattr(ray, "shutdown", shutdown)
    monkeypatch.setattr(
        sweep, "ensure_ray", lambda address, **_: seen["ensure_ray"].append(address)
    )

    def stop(*args: Any, **kwargs: Any) -> int:
        raise _Stop

    monkeypatch.setattr(sweep, "_start_fused", stop)
    return seen


def test_the_check_names_the_key_the_value_and_what_there_is(fake_ray: dict[str, Any]) -> None:
    check_trial_fits_machine(2, 0)
    with pytest.raises(SpecError) as info:
        check_trial_fits_machine(1, 1)
    assert str(info.value) == (
        "resources.gpu=1: one trial asks for more GPUs than this machine has (0), so no "
        "trial could ever start; set resources.gpu to 0, or join a cluster that has them "
        "(--address). No trial was started"
    )
    with pytest.raises(SpecError, match=r"^resources.cpu=2.5: .* this machine has \(2\).*"):
        check_trial_fits_machine(2.5, 0)
    with pytest.raises(SpecError, match=r"lower resources\.cpu to at most 2,"):
        check_trial_fits_machine(3, 0)
    assert trial_fits_cluster(4, 1) == []
    assert trial_fits_cluster(8, 2) == [
        "resources.cpu=8: no node of the cluster has that many CPUs now (the largest has 4); "
        "trials wait until one does (an autoscaling cluster may add one)",
        "resources.gpu=2: no node of the cluster has that many GPUs now (the largest has 1); "
        "trials wait until one does (an autoscaling cluster may add one)",
    ]


def test_a_local_sweep_refuses_a_trial_bigger_than_the_machine(
    fake_ray: dict[str, Any], tmp_path: Any
) -> None:
    spec = load_spec({**TINY_SPEC, "resources": {"cpu": 1, "gpu": 1}})
    with pytest.raises(SpecError, match=r"^resources.gpu=1: one trial asks for more GPUs"):
        sweep.run_sweep(spec, storage=str(tmp_path))
    assert fake_ray["shutdown"] == 1  # the local Ray it started is stopped again
    # One that fits goes on (to where its trials would be built).
    with pytest.raises(_Stop):
        sweep.run_sweep(load_spec({**TINY_SPEC, "resources": {"cpu": 2}}), storage=str(tmp_path))
    assert fake_ray["shutdown"] == 1


def test_joining_a_cluster_only_warns(
    fake_ray: dict[str, Any], tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    spec = load_spec({**TINY_SPEC, "resources": {"cpu": 1, "gpu": 2}})
    with caplog.at_level(logging.WARNING, logger=sweep.__name__), pytest.raises(_Stop):
        sweep.run_sweep(spec, address="10.0.0.1:6379", storage=str(tmp_path))
    assert fake_ray["ensure_ray"] == ["10.0.0.1:6379"] and fake_ray["shutdown"] == 0
    assert [r.getMessage() for r in caplog.records] == [
        "warning: resources.gpu=2: no node of the cluster has that many GPUs now (the "
        "largest has 1); trials wait until one does (an autoscaling cluster may add one)"
    ]
