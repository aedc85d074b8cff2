"""Promotion from a real (tiny) sweep on a local Ray, and the registry commands' doors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from regtune.errors import SpecError
from regtune.platform.cli import app
from regtune.platform.registry import list_versions, load_version, registry_root
from regtune.platform.registry.gates import parse_gates
from regtune.platform.registry.promote import promote
from regtune.platform.registry.trials import read_sweep_trials, read_weights
from regtune.trainables.config import parse_train_config
from regtune.trainables.data import Dataset
from regtune.trainables.models import build_model

pytestmark = pytest.mark.ray

runner = CliRunner()

SWEEP: dict[str, Any] = {
    "name": "reg",
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 16, "depth": 1},
    # calibration: each trial fits a temperature at its end (carried into versions)
    "training": {"batch_size": 128, "lr": 0.02, "robust_every": 0, "calibration": "temperature"},
    "penalties": {"l2": {"loguniform": [1e-6, 1e-3]}},
    "objectives": [{"metric": "val_acc", "mode": "max"}],
    "scheduler": {"kind": "none"},
    # One trial at a time: both run in one reused worker process (a second
    # process would cost its imports, ~8 CPU-seconds, and test nothing more).
    "searcher": {"kind": "random", "seed": 0, "max_concurrent": 1},
    "budget": {"samples": 2, "max_epochs": 2},
    "resources": {"cpu": 1},
}


@pytest.fixture(scope="module")
def sweep(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(storage root, experiment name) of a finished 2-trial digits sweep."""
    from regtune.platform.tune.sweep import run_sweep
    from regtune.search_spaces import load_spec

    storage = str(tmp_path_factory.mktemp("storage"))
    outcome = run_sweep(load_spec(SWEEP), storage=storage, name="reg-sweep")
    assert all(t.status == "finished" for t in outcome.trials)
    return storage, Path(outcome.path).name


@pytest.fixture(scope="module")
def probe(sweep: tuple[str, str]) -> tuple[str, str]:
    """:func:`sweep` with ``probe-ens:1`` registered, for the bad-input cases that
    need a model (their own, so they hold whichever worker runs them first)."""
    storage, experiment = sweep
    root = registry_root(storage)
    if not list_versions("probe-ens", root=root):
        promote(experiment, name="probe-ens", top_k=1, storage=storage, root=root)
    return sweep


def _cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_promote_registers_the_best_trials_as_an_ensemble(
    sweep: tuple[str, str], digits: Dataset
) -> None:
    storage, experiment = sweep
    root = registry_root(storage)
    result = promote(
        experiment,
        name="digits-ens",
        top_k=2,
        gates=parse_gates(["gap<=1.0", "test_acc>=0.2"]),
        storage=storage,
        root=root,
    )
    assert result.passed and result.version is not None
    trials = read_sweep_trials(Path(storage) / experiment)
    # Best first; ties as everywhere: the lower val_loss, then the trial id.
    best = sorted(trials, key=lambda t: (-t.metrics["val_acc"], t.metrics["val_loss"], t.trial_id))
    best = best[:2]
    assert [t.trial_id for t in result.members] == [t.trial_id for t in best]
    mv = load_version("digits-ens", root=root)
    assert (mv.version, mv.kind) == (1, "ensemble")
    lineage = mv.meta["lineage"]
    assert lineage["experiment"] == experiment and lineage["trials"] == [t.trial_id for t in best]
    assert lineage["gates"] == ["gap<=1.0", "test_acc>=0.2"]
    # The registered ensemble predicts the mean probabilities of the trials' own networks.
    probs = []
    for trial in best:
        w = read_weights(trial)
        cfg = parse_train_config(w.config)
        net = build_model(cfg.model, input_shape=digits.input_shape, n_classes=10)
        net.load_state_dict(w.state)
        with torch.no_grad():
            probs.append(net.eval()(digits.test.x).softmax(dim=1))
    with torch.no_grad():
        served = mv.module(mv.schema.transform(digits.raw_test.to_dict("records")))
    assert torch.allclose(served.softmax(dim=1), sum(probs) / 2, atol=1e-6)
    assert mv.metrics["test_acc"] == pytest.approx(
        float(((sum(probs) / 2).argmax(dim=1) == digits.test.y).double().mean())
    )


def test_several_objectives_choose_along_the_pareto_front(sweep: tuple[str, str]) -> None:
    storage, experiment = sweep
    objectives = [("val_acc", "max"), ("sparsity", "max")]
    result = promote(
        experiment, name="pareto", top_k=1, objectives=objectives, storage=storage,
        root=registry_root(storage),
    )  # fmt: skip
    assert result.version is not None
    lineage = result.version.meta["lineage"]
    assert lineage["selection"] == "pareto" and lineage["excluded"] == {}
    chosen = result.members[0].metrics
    trials = read_sweep_trials(Path(storage) / experiment)
    # The chosen trial is on the front: no trial beats it in both objectives.
    assert not any(
        t.metrics["val_acc"] > chosen["val_acc"] and t.metrics["sparsity"] > chosen["sparsity"]
        for t in trials
    )


def test_failed_gate_writes_nothing_and_says_by_how_much(sweep: tuple[str, str]) -> None:
    storage, experiment = sweep
    before = list_versions("gated", root=registry_root(storage))
    result = _cli(
        "promote", experiment, "--name", "gated", "--storage", storage,
        "--gate", "test_acc>=0.999", "--gate", "gap<=1",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "test_acc>=0.999: test_acc =" in result.stdout and "fails by" in result.stdout
    assert "nothing was written" in result.stdout
    assert list_versions("gated", root=registry_root(storage)) == before == []
    assert not (Path(registry_root(storage)) / "gated").exists() or not any(
        (Path(registry_root(storage)) / "gated").iterdir()
    )


def test_promote_cli_json_and_models_commands(sweep: tuple[str, str]) -> None:
    storage, experiment = sweep
    first = _cli(
        "promote", experiment, "--name", "cli-ens", "--storage", storage,
        "--top-k", "1", "--objective", "val_loss:min", "--json",
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    payload = json.loads(first.stdout)
    assert payload["registered"] == "cli-ens:1" and len(payload["members"]) == 1
    # Tune's final checkpoint holds the trainer's fitted temperature: a single-trial
    # version keeps it; the two-member ensemble below fits its own on validation.
    trial = next(
        t for t in read_sweep_trials(Path(storage) / experiment)
        if t.trial_id == payload["members"][0]["trial_id"]
    )  # fmt: skip
    stored = read_weights(trial).temperatures
    assert stored is not None and payload["postprocessing"]["temperatures"] == list(stored)
    assert payload["postprocessing"]["record"]["source"]["temperatures"] == "trial"
    second = _cli("promote", experiment, "--name", "cli-ens", "--storage", storage, "--top-k", "2")
    assert second.exit_code == 0, second.output
    assert "registered cli-ens:2" in second.stdout and "post-processing" in second.stdout
    refit = load_version("cli-ens:2", root=registry_root(storage)).postprocessing
    assert refit is not None and refit.record["source"]["temperatures"] == "refit"

    listed = _cli("models", "list", "--storage", storage, "--json")
    assert listed.exit_code == 0, listed.output
    names = {m["name"]: m for m in json.loads(listed.stdout)["models"]}
    assert names["cli-ens"]["versions"] == [1, 2]

    shown = _cli("models", "show", "cli-ens:1", "--storage", storage, "--json")
    assert shown.exit_code == 0, shown.output
    meta = json.loads(shown.stdout)
    assert meta["version"] == 1 and meta["lineage"]["objectives"] == [
        {"metric": "val_loss", "mode": "min"}
    ]
    table = _cli("models", "show", "cli-ens", "--storage", storage)
    assert table.exit_code == 0 and "cli-ens:2" in table.stdout

    diff = _cli("models", "diff", "cli-ens:1", "cli-ens:2", "--storage", storage, "--json")
    assert diff.exit_code == 0, diff.output
    changes = json.loads(diff.stdout)["changes"]
    assert {"kind", "metrics", "lineage"} <= set(changes)
    assert {"key": "kind", "a": "single", "b": "ensemble"} in changes["kind"]
    text = _cli("models", "diff", "cli-ens:1", "cli-ens:2", "--storage", storage)
    assert text.exit_code == 0 and "ensemble" in text.stdout and "lineage" in text.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["promote", "EXP", "--name", "m", "--gate", "gap=<0.1"], ["'gap=<0.1' is not a gate"]),
        (["promote", "EXP", "--name", "m", "--top-k", "0"], ["--top-k 0 is not allowed"]),
        (["promote", "EXP", "--name", "bad name"], ["model name 'bad name' is not allowed"]),
        (
            ["promote", "EXP", "--name", "m", "--objective", "val_acc:up"],
            ["--objective 'val_acc:up'"],
        ),
        (["promote", "nope", "--name", "m"], ["experiment 'nope' not found"]),
        (["promote", "EXP", "--name", "m", "--gate", "gapp<=1"], ["no metric 'gapp'", "gap"]),
        (["models", "show", "unknown"], ["'unknown' has no versions"]),
        (["models", "show", "probe-ens:99"], ["no version 99"]),
        (["models", "show", "probe-ens:x"], ["version 'x'", "positive integer"]),
        (["models", "diff", "probe-ens:1", "ghost:1"], ["'ghost' has no versions"]),
    ],
)
def test_bad_cli_input_exits_2_with_a_clear_message(
    probe: tuple[str, str], args: list[str], fragments: list[str]
) -> None:
    storage, experiment = probe
    args = [experiment if a == "EXP" else a for a in args] + ["--storage", storage]
    before = sorted(p.name for p in Path(storage).rglob("*"))
    result = _cli(*args)
    assert result.exit_code == 2, result.output
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert "Traceback" not in result.output
    assert sorted(p.name for p in Path(storage).rglob("*")) == before


def test_promote_without_objectives_needs_one(tmp_path: Path, sweep: tuple[str, str]) -> None:
    storage, experiment = sweep
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(Path(storage) / experiment, copy, ignore=shutil.ignore_patterns("results"))
    with pytest.raises(SpecError, match="pass --objective"):
        promote(str(copy), name="x", root=str(tmp_path / "reg"))
