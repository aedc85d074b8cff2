"""cluster.yaml passes the checks `ray up` runs before it contacts the cloud.

`ray up` calls ``prepare_config`` (merge with the provider's defaults, merge
setup commands, Docker checks, per-type worker bounds) and then
``validate_config`` (Ray's JSON schema and cross-field rules); only after
that does it ask AWS anything. The tests run those same two functions
(through :func:`regtune.platform.tune.ray_private.ray_up_checks`, the one
place that imports Ray's private modules), so nothing here is mocked and
nothing reaches a cloud.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from regtune.platform.tune.ray_private import ray_up_checks

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "cluster.yaml"


def _raw() -> dict[str, Any]:
    data = yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _ray_up_checks(config: dict[str, Any]) -> dict[str, Any]:
    return ray_up_checks(copy.deepcopy(config))


@pytest.fixture(scope="module")
def prepared() -> dict[str, Any]:
    return _ray_up_checks(_raw())


def _start_options(command: str) -> dict[str, str]:
    """``--key=value`` options of the ``ray start`` in a start command."""
    words = shlex.split(command.replace(";", " ; "))
    start = words.index("start")
    assert words[start - 1] == "ray"
    options: dict[str, str] = {}
    for word in words[start + 1 :]:
        if word.startswith("--"):
            key, _, value = word[2:].partition("=")
            options[key] = value
    return options


def _ray_start(commands: list[str]) -> str:
    starts = [c for c in commands if "ray start" in c]
    assert len(starts) == 1, commands
    return starts[0]


def test_passes_ray_up_validation(prepared: dict[str, Any]) -> None:
    assert prepared["cluster_name"] == "regtune"
    assert prepared["provider"]["type"] == "aws"


def test_cpu_head_and_autoscaling_gpu_workers(prepared: dict[str, Any]) -> None:
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"].get("CPU", 0) > 0
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != prepared["head_node_type"]]
    gpu_workers = [t for t in workers if t["resources"].get("GPU", 0) >= 1]
    assert gpu_workers, types
    for worker in gpu_workers:
        # Autoscaling: none while idle, some when trials ask for GPUs.
        assert worker["min_workers"] == 0
        assert worker["max_workers"] > 0
        assert worker["max_workers"] <= prepared["max_workers"]


def test_every_node_installs_regtune_from_the_mounted_wheel(prepared: dict[str, Any]) -> None:
    mounts = prepared["file_mounts"]
    wheel_dirs = [remote for remote, local in mounts.items() if local.rstrip("/") == "./dist"]
    assert len(wheel_dirs) == 1, mounts
    for key in ("head_setup_commands", "worker_setup_commands"):
        # After prepare_config these hold the common setup_commands too.
        commands = prepared[key]
        installs = [c for c in commands if "pip install" in c and wheel_dirs[0] in c]
        assert installs, (key, commands)
        assert any("torch==" in c for c in commands), (key, commands)
        # Installs come after the line that switches shells to token auth.
        assert "RAY_AUTH_MODE=token" in commands[0]


def test_dashboard_on_head_loopback_only(prepared: dict[str, Any]) -> None:
    options = _start_options(_ray_start(prepared["head_start_ray_commands"]))
    assert "head" in options
    assert options["include-dashboard"] == "true"
    assert options["dashboard-host"] == "127.0.0.1"
    assert options["dashboard-port"] == "8265"
    worker_options = _start_options(_ray_start(prepared["worker_start_ray_commands"]))
    assert "head" not in worker_options


def test_token_auth_on_every_node(prepared: dict[str, Any]) -> None:
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "RAY_AUTH_MODE=token ray start" in _ray_start(prepared[key])
    # Each node gets the local ~/.ray (auth_token) at its default token path.
    assert prepared["file_mounts"]["~/.ray"] == "~/.ray"


def test_docker_images_match_installed_ray(prepared: dict[str, Any]) -> None:
    import ray

    docker = prepared["docker"]
    assert docker["head_image"].endswith(f":{ray.__version__}-py311-cpu")
    assert docker["worker_image"].endswith(f":{ray.__version__}-py311-gpu")


@pytest.mark.parametrize(
    ("break_it", "error"),
    [
        # A fractional GPU count: the schema wants integers.
        (
            lambda c: c["available_node_types"]["worker.gpu"]["resources"].update(GPU=0.5),
            "is not of type 'integer'",
        ),
        # A misspelt node-type key: the schema allows no unknown keys.
        (
            lambda c: c["available_node_types"]["worker.gpu"].update(min_worker=0),
            "'min_worker' was unexpected",
        ),
        # A head type that is not defined.
        (lambda c: c.update(head_node_type="head.missing"), "head_node_type"),
        # More minimum workers than the cluster may have.
        (
            lambda c: c["available_node_types"]["worker.gpu"].update(min_workers=5),
            "max_workers",
        ),
    ],
    ids=["fractional-gpu", "unknown-key", "undefined-head", "min-above-max"],
)
def test_validation_rejects_broken_configs(break_it: Any, error: str) -> None:
    config = _raw()
    break_it(config)
    with pytest.raises((jsonschema.ValidationError, ValueError)) as info:
        _ray_up_checks(config)
    assert error in str(info.value)
