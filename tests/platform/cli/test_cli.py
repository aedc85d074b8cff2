"""The regtune command line: real commands, bad input at every door."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from regtune.platform.cli import app
from regtune.platform.cli.sweep import (
    best_command,
    print_summary,
    progress_display,
    ray_start_text,
    short_ids,
    short_names,
)
from regtune.platform.results.outcome import SweepOutcome, TrialSummary
from regtune.search_spaces import load_train_config
from regtune.search_spaces.overrides import parse_override

runner = CliRunner()


def test_train_json_prints_final_metrics(data_cache: Path) -> None:
    result = runner.invoke(app, ["train", "quickstart", "--set", "budget.max_epochs=2", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["epochs"] == 2
    assert 0.0 < payload["metrics"]["test_acc"] <= 1.0
    assert payload["config"]["dataset"]["name"] == "digits"


def test_train_without_a_terminal_prints_epoch_lines(data_cache: Path) -> None:
    result = runner.invoke(app, ["train", "quickstart", "--set", "budget.max_epochs=2"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "epoch" in line]
    # The first epoch at once, the last always; a line starts with the elapsed time.
    assert [line.split("]")[1].split()[:2] for line in lines] == [
        ["epoch", "1/2"],
        ["epoch", "2/2"],
    ]
    assert "val_acc" in lines[-1]
    assert "test_acc" in result.stdout
    # What the data gave, before the first epoch (digits: 64 pixels, 10 classes).
    described = result.stderr.split("epoch 1/2")[0]
    assert "dataset digits:" in described and "64 inputs" in described
    assert "label 'digit': classes" in described or "label" in described.splitlines()[1]


def test_train_checkpoint_and_resume(data_cache: Path, tmp_path: Path) -> None:
    spec = tmp_path / "run.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "dataset": "digits",
                "model": {"arch": "mlp", "width": 16, "depth": 1},
                "training": {"epochs": 3, "robust_every": 0},
            }
        )
    )
    ckpt = tmp_path / "ckpt"
    first = runner.invoke(app, ["train", str(spec), "--checkpoint-dir", str(ckpt), "--json"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(
        app,
        ["train", str(spec), "--set", "training.epochs=5", "--checkpoint-dir", str(ckpt)],
    )
    # Without --resume an existing checkpoint is never overwritten.
    assert again.exit_code == 2 and "already exists" in again.output
    resumed = runner.invoke(
        app, ["train", str(spec), "--checkpoint-dir", str(ckpt), "--resume", "--json"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["epochs"] == 3


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        # Each message names what was wrong (option or key, and the value) and
        # what is allowed; a bad --set names the --set option.
        (["train", "no-such-spec"], ("no-such-spec", "quickstart")),
        (["train", "quickstart", "--set", "penalties.l9=1"], ("--set", "penalties.l9", "l2")),
        # A misspelt section above the key: still the --set's fault, not the preset's.
        (
            ["train", "quickstart", "--set", "trainig.lr=0.1"],
            ("--set trainig.lr=0.1:", "did you mean 'training'"),
        ),
        (["train", "quickstart", "--set", "budget.samples"], ("--set", "budget.samples", "=")),
        (["train", "quickstart", "--resume"], ("--resume", "--checkpoint-dir")),
        (
            ["train", "quickstart", "--resume", "--checkpoint-dir", "/nonexistent/ckpt"],
            ("/nonexistent/ckpt",),
        ),
        (
            ["sweep", "quickstart", "--set", "scheduler.kind=fastest"],
            ("--set", "scheduler.kind", "fastest", "asha", "pareto-asha"),
        ),
        (["sweep", "quickstart", "--set", "resources.cpu=-1"], ("--set", "resources.cpu", "-1")),
        (
            ["submit", "quickstart", "--set", "budget.max_epochs=0"],
            ("--set", "budget.max_epochs", "0"),
        ),
        (["submit", "quickstart", "--address", "http://127.0.0.1:1"], ("127.0.0.1:1",)),
        (["data", "fetch", "mnist"], ("mnist", "digits", "adult")),
    ],
)
def test_bad_input_exits_2_with_a_message(args: list[str], fragments: tuple[str, ...]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    # The message is all there is: no traceback, no summary on stdout.
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_verbose_flag_shows_ray_and_tune_messages() -> None:
    from regtune.platform.tune.runtime import is_verbose, set_verbose

    try:
        # A bad value stops the sweep before Ray starts; the flag is set by then.
        bad = ["sweep", "quickstart", "--set", "budget.samples=0"]
        result = runner.invoke(app, [*bad, "--verbose"])
        assert result.exit_code == 2 and is_verbose()
        result = runner.invoke(app, bad)
        assert result.exit_code == 2 and not is_verbose()
    finally:
        set_verbose(False)


def test_console_script_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "regtune.platform.cli", "data", "list"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.split() == ["digits", "breast_cancer", "adult", "german", "compas"]


@pytest.mark.ray
def test_quickstart_runs_the_default_sweep(ray_local: None, tmp_path: Path) -> None:
    result = runner.invoke(app, ["quickstart", "--storage", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "quickstart-" in result.stdout
    assert "6 trials" in result.stdout
    # After the table: the best trial's train command and where the results are.
    assert "regtune train quickstart --set model.dropout=" in result.stdout
    assert f"results: {tmp_path}/quickstart-" in result.stdout
    assert f"regtune analyze {tmp_path}/quickstart-" in result.stdout
    assert len(list(tmp_path.glob("quickstart-*/trial_*"))) == 6
    # Then the winner is promoted and served, answering one request.
    assert "registered quickstart:1" in result.stdout
    assert '"model_name": "quickstart"' in result.stdout and '"predictions"' in result.stdout
    # The test's Ray was started without direct ingress: the quickstart serves by the
    # proxy instead of telling the user about a setting they never chose.
    assert "--ingress direct" not in result.output


@pytest.mark.ray
def test_sweep_json_summary(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = runner.invoke(
        app,
        [
            "sweep",
            "quickstart",
            "--set",
            "budget.samples=2",
            "--set",
            "budget.max_epochs=2",
            # A rung below max_epochs: asha must be able to stop a trial early.
            "--set",
            "scheduler.grace_period=1",
            # One trial at a time: both share one worker process.
            "--set",
            "searcher.max_concurrent=1",
            "--storage",
            str(tmp_path),
            "--name",
            "cli-json",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["name"] == "cli-json" and len(summary["trials"]) == 2
    # Ray's and Tune's own banners stay out without --verbose.
    banners = ("Token authentication is enabled", "Configuration for experiment", "View detailed")
    assert not [b for b in banners if b in result.output]
    # The best trial's command trains exactly its sampled values.
    best = next(t for t in summary["trials"] if t["trial_id"] == summary["best"]["trial_id"])
    words = shlex.split(summary["best"]["command"])
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    config = load_train_config(words[2], sets)
    assert config["training"]["epochs"] == 2
    assert config["model"]["dropout"] == best["params"]["model.dropout"]
    assert config["penalties"]["l2"] == best["params"]["penalties.l2"]
    # run_sweep ranked the trials on the rows the store holds, as a rebuild from disk does.
    rebuilt = SweepOutcome.from_path(str(tmp_path / "cli-json"))
    assert rebuilt.best is not None and rebuilt.best.trial_id == summary["best"]["trial_id"]
    epochs = {t["trial_id"]: t["epoch"] for t in summary["trials"]}
    assert epochs == {t.trial_id: t.epoch for t in rebuilt.trials}
    assert all(epoch in (1, 2) for epoch in epochs.values())
    # One source: sweep --json is the outcome's to_dict, plus the train command.
    rebuilt_dict = rebuilt.to_dict()
    assert set(summary) == set(rebuilt_dict)
    assert {"objectives", "results"} <= set(summary)
    assert summary["objectives"] == rebuilt_dict["objectives"]
    assert [set(t) for t in summary["trials"]] == [set(t) for t in rebuilt_dict["trials"]]
    assert set(summary["best"]) == {*rebuilt_dict["best"], "command"}
    again = runner.invoke(
        app, ["sweep", "quickstart", "--storage", str(tmp_path), "--name", "cli-json"]
    )
    assert again.exit_code == 2 and "already exists" in again.output
    # Refused before Ray starts, and nothing said of starting it (nor of the sweep).
    assert "starting Ray" not in again.output and "sweep cli-json:" not in again.output
    # --resume of a finished sweep: nothing left, said before Ray would start;
    # the stored summary is printed and the exit status is 0.
    from regtune.platform.tune import sweep as sweep_module

    def no_ray(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Ray was started to resume a finished sweep")

    monkeypatch.setattr(sweep_module, "ensure_ray", no_ray)
    resumed = runner.invoke(
        app,
        ["sweep", "quickstart", "--storage", str(tmp_path), "--name", "cli-json", "--resume"],
    )
    assert resumed.exit_code == 0, resumed.output
    assert "nothing left to resume" in resumed.stderr
    assert "starting Ray" not in resumed.output
    assert f"best by val_acc: trial {summary['best']['trial_id']}" in resumed.stdout
    assert f"results: {tmp_path}/cli-json" in resumed.stdout


# --- The sweep summary: readable at 80 columns, full when wide, reproducible ---

THREE_OBJECTIVES = (("val_acc", "max"), ("robust_acc", "max"), ("dp_diff", "min"))


def _outcome(params: list[dict[str, Any]], objectives: tuple[tuple[str, str], ...]) -> SweepOutcome:
    """An outcome shaped as run_sweep returns it, with Tune-style trial ids."""
    trials = [
        TrialSummary(
            trial_id=f"1ce5f8a2_{i:05d}",
            status=("finished", "stopped early")[i % 2],
            iterations=10 - i % 2 * 7,
            params=p,
            objectives={m: 0.5 + 0.01 * i for m, _ in objectives},
            metrics={},
            checkpoint=None,
        )
        for i, p in enumerate(params)
    ]
    return SweepOutcome(
        name="demo",
        path="/runs/demo",
        objectives=objectives,
        trials=trials,
        elapsed_s=12.5,
        front=[0, 2] if len(objectives) > 1 else [],
    )


def _three_objective_params(n: int) -> list[dict[str, Any]]:
    return [
        {
            "penalties.l2": 1.0e-5 * (i + 1),
            "penalties.adversarial.method": ("none", "fgsm_rs", "pgd")[i % 3],
            "penalties.adversarial.eps": 0.01 * i + 0.003,
            "penalties.fairness.strength": 0.1 * i + 0.012,
        }
        for i in range(n)
    ]


def _render(outcome: SweepOutcome, width: int) -> str:
    console = Console(width=width, file=io.StringIO())
    print_summary(outcome, spec="three-objective", overrides=["budget.samples=12"], console=console)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _rows(text: str, first_cells: list[str]) -> dict[str, str]:
    """The table lines that start with each first cell (a trial id)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split()
        if words and words[0] in first_cells:
            found.setdefault(words[0], line)
    return found


def test_summary_at_80_columns_tells_trials_and_parameters_apart() -> None:
    outcome = _outcome(_three_objective_params(12), THREE_OBJECTIVES)
    text = _render(outcome, 80)
    table = text.split("12 trials")[0]
    assert all(len(line) <= 80 for line in table.splitlines())
    assert "…" not in text
    # Short ids: what follows the shared prefix, one row each in every table part.
    short = [f"{i:02d}" for i in range(12)]
    assert "id after 1ce5f8a2_000" in text
    assert set(_rows(table, short)) == set(short)
    # Short parameter names, each a header; values whole (not cut).
    headers = " ".join(line for line in table.splitlines() if "trial" in line.split()[:1])
    for name in ("l2", "method", "eps", "strength", "val_acc", "robust_acc", "dp_diff"):
        assert name in headers.split()
    assert "fgsm_rs" in table


def test_summary_at_160_columns_shows_full_trial_ids() -> None:
    outcome = _outcome(_three_objective_params(12), THREE_OBJECTIVES)
    text = _render(outcome, 160)
    ids = [t.trial_id for t in outcome.trials]
    assert set(_rows(text, ids)) == set(ids)
    assert "…" not in text


def test_summary_full_names_when_they_fit() -> None:
    params = [{"model.dropout": 0.1 * i, "penalties.l2": 1e-4 * i} for i in range(3)]
    text = _render(_outcome(params, (("val_acc", "max"),)), 160)
    assert "penalties.l2" in text and "model.dropout" in text and "val_acc (max)" in text
    narrow = _render(_outcome(params, (("val_acc", "max"),)), 80)
    assert "…" not in narrow


def test_summary_rows_best_first() -> None:
    outcome = _outcome(_three_objective_params(4), THREE_OBJECTIVES)
    text = _render(outcome, 160)
    positions = [text.index(t.trial_id) for t in outcome.trials]
    # val_acc rises with the trial index, so the last trial is best.
    assert positions == sorted(positions, reverse=True)
    assert "best by val_acc: trial 1ce5f8a2_00003" in text
    assert "results: /runs/demo" in text
    assert "  regtune analyze /runs/demo\n" in text


def test_summary_first_row_is_the_best_trial_and_says_which_epoch() -> None:
    """Ties on val_acc go to the lower val_loss of the ranked row (as the "best by"
    line decides), an errored trial with the top value comes last, and the objectives'
    epoch is shown where it is not the last."""
    rows = [
        ("1ce5f8a2_00000", "error", 0.99, 0.01),
        ("1ce5f8a2_00001", "finished", 0.9, 0.30),
        ("1ce5f8a2_00002", "finished", 0.9, 0.20),
        ("1ce5f8a2_00003", "finished", 0.8, 0.10),
    ]
    trials = [
        TrialSummary(
            trial_id=tid,
            status=status,
            iterations=5,
            params={"penalties.l2": 0.1},
            objectives={"val_acc": acc},
            metrics={"val_acc": acc, "val_loss": 0.0},  # the last epoch's: not the ranked row
            checkpoint=None,
            epoch=3,
            ranked={"val_acc": acc, "val_loss": loss},
        )
        for tid, status, acc, loss in rows
    ]
    outcome = SweepOutcome("demo", "/runs/demo", (("val_acc", "max"),), trials, 1.0)
    text = _render(outcome, 160)
    ids = [tid for tid, *_ in rows]
    order = sorted(ids, key=text.index)
    assert order == [ids[2], ids[1], ids[3], ids[0]]
    assert f"best by val_acc: trial {ids[2]}" in text
    assert "at epoch" in text and "objectives at the epoch whose weights each trial keeps" in text


def _best_params() -> dict[str, Any]:
    params = _three_objective_params(3)[2]
    params["penalties.l2"] = 1e-05  # repr has no dot: YAML would read "1e-05" as text
    return params


def test_best_command_sets_exactly_the_trial_values() -> None:
    params = _best_params()
    words = shlex.split(best_command("three-objective", ["budget.max_epochs=3"], params))
    assert words[:3] == ["regtune", "train", "three-objective"]
    sets = [parse_override(words[i + 1]) for i, w in enumerate(words) if w == "--set"]
    assert sets[0] == (("budget", "max_epochs"), 3)
    assert {".".join(k): v for k, v in sets[1:]} == params


def test_best_command_trains_the_best_configuration() -> None:
    params = _best_params()
    words = shlex.split(best_command("three-objective", ["budget.max_epochs=3"], params))
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    config = load_train_config(words[2], sets)
    assert config["training"]["epochs"] == 3
    for key, value in params.items():
        node: Any = config
        for part in key.split("."):
            node = node[part]
        assert node == value, key


def test_best_command_leaves_out_an_override_the_sampled_value_replaces() -> None:
    overrides = [
        "penalties.fairness.strength={grid: [0.0, 1.0]}",
        "penalties.l2.loguniform=[1e-6, 1e-3]",
        "budget.max_epochs=3",
    ]
    params = {"penalties.fairness.strength": 0.0, "penalties.l2": 1e-4}
    words = shlex.split(best_command("fair", overrides, params))
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    assert sets == [
        "budget.max_epochs=3",
        "penalties.fairness.strength=0.0",
        "penalties.l2=0.0001",
    ]


def test_resume_of_a_missing_experiment_says_nothing_of_starting_ray(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["sweep", "quickstart", "--resume", "--name", "nosuch", "--storage", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert "no experiment 'nosuch'" in result.stderr
    assert "starting Ray" not in result.output


def test_short_ids_and_names() -> None:
    assert short_ids(["ab_00001", "ab_00002", "ab_00010"]) == (["01", "02", "10"], "ab_000")
    assert short_ids(["x_1", "x_12"]) == (["1", "12"], "x_")
    assert short_ids(["only"]) == (["only"], "")
    names = ["penalties.l2", "penalties.fairness.strength", "penalties.adversarial.strength"]
    assert short_names(names) == ["l2", "fairness.strength", "adversarial.strength"]
    assert short_names(["training.seed"], taken=["seed"]) == ["training.seed"]


def test_progress_lines_when_output_is_not_a_terminal() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False, width=120)
    snap = {
        "total": 4,
        "running": 2,
        "finished": 1,
        "stopped_early": 1,
        "errors": 0,
        "done": 2,
        "best": {"val_acc": 0.9},
        "elapsed_s": 3.0,
    }
    with progress_display(console) as show:
        assert show is not None
        # Nothing is said of Ray until the sweep starts it (a refusal comes first).
        assert stream.getvalue() == ""
        show.starting_ray()
        show(snap)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "starting Ray ..."
    assert "trials 2/4 done" in lines[1] and "val_acc 0.9000" in lines[1]
    quiet = io.StringIO()
    with progress_display(Console(file=quiet), quiet=True) as show:
        assert show is None
    assert quiet.getvalue() == ""


def test_the_display_says_joining_rather_than_starting_when_a_cluster_is_joined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")  # exported for `ray job submit`
    assert ray_start_text(None) == "starting Ray ..."
    assert ray_start_text("local") == "starting Ray ..."
    assert ray_start_text("10.0.0.5:6379") == "joining the Ray cluster at 10.0.0.5:6379 ..."
    assert ray_start_text("auto") == "joining the Ray cluster (address auto) ..."
    # Inside a Ray job's driver no --address joins the job's cluster.
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    assert ray_start_text(None) == "joining the Ray cluster (address auto) ..."
    stream = io.StringIO()
    with progress_display(Console(file=stream, force_terminal=False, width=300)) as show:
        assert show is not None
        show.starting_ray(ray_start_text("[x]:" + "9" * 400))
    said = stream.getvalue().strip()
    # Markup in an address is shown as typed; a huge one is cut.
    assert said.startswith("joining the Ray cluster at [x]:999") and "(404 characters)" in said
