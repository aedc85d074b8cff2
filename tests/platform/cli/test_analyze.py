"""``regtune analyze`` end to end on real Parquet written by the results store, and every
bad input it can meet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import (
    HEALTHY,
    OVERFIT,
    SHORT,
    UNDERFIT,
    UNSTABLE,
    final_report,
    write_experiment,
)
from tests.platform.cli.invoke import invoke

CURVES = {"o": OVERFIT, "u": UNDERFIT, "x": UNSTABLE, "h": HEALTHY, "s": SHORT}
L2 = {"o": 1e-6, "u": 1e-2, "x": 1e-3, "h": 1e-4, "s": 1e-5}
DROPOUT = {"o": 0.1, "u": 0.2, "x": 0.3, "h": 0.05, "s": 0.1}


def _configs() -> dict[str, dict[str, Any]]:
    return {t: {"penalties": {"l2": L2[t]}, "model": {"dropout": DROPOUT[t]}} for t in CURVES}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exp = tmp_path_factory.mktemp("runs") / "quick"
    spec = load_spec("quickstart").to_dict()
    write_experiment(str(exp), CURVES, _configs(), spec=spec, running=["s"])
    return exp


def test_json_output(experiment: Path) -> None:
    result = invoke("analyze", str(experiment), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["experiments"][0]
    assert data["experiment"] == "quick" and data["n_trials"] == 5
    assert data["objective"] == ["val_acc", "max"]
    assert data["diagnosis"]["counts"] == {
        "healthy": 1,
        "overfit": 1,
        "too short": 1,
        "underfit": 1,
        "unstable": 1,
    }
    assert data["best"]["trial_id"] == "h"
    assert {p["name"] for p in data["swept"]} == {"penalties.l2", "model.dropout"}
    l2 = next(p for p in data["swept"] if p["name"] == "penalties.l2")
    assert l2["log"] is True and l2["low"] == 1e-6
    best_l2 = [r for r in data["paths"]["penalties.l2"] if r["best"]]
    assert {r["strength"] for r in best_l2} == {1e-4}
    assert data["front"]["objectives"] == [["val_acc", "max"], ["ece", "min"]]
    assert set(data["front"]["reference"]) == {"val_acc", "ece"}
    assert data["front"]["hypervolume"] > 0
    # Trial s never ended: the sweep is still running, and the analysis says so.
    assert any("not finished (1 of 5 trials running or interrupted; " in n for n in data["notes"])


def test_terminal_tables_html_and_pngs(experiment: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    result = invoke(
        "analyze", str(experiment), "--html", str(report), "--figures", str(tmp_path / "png")
    )
    assert result.exit_code == 0, result.output
    assert "Pareto front" in result.stdout and "diagnosis" in result.stdout
    assert "path: penalties.l2 vs val_acc" in result.stdout
    pngs = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert "quick-path-penalties.l2.png" in pngs and "quick-front.png" in pngs
    assert all((tmp_path / "png" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    text = report.read_text()
    assert "data:image/png;base64," in text and "<svg" in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text


def test_two_experiments_side_by_side(experiment: Path, tmp_path: Path) -> None:
    other = tmp_path / "wider"
    spec = load_spec("quickstart", overrides=["penalties.l2={loguniform: [1e-8, 1.0]}"])
    write_experiment(str(other), CURVES, _configs(), spec=spec.to_dict())
    result = invoke("analyze", str(experiment), str(other), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [e["experiment"] for e in data["experiments"]] == ["quick", "wider"]
    diffs = {row["key"]: row for row in data["spec_differences"]}
    assert "penalties.l2" in diffs
    assert "1e-08" in diffs["penalties.l2"]["wider"]
    figures = tmp_path / "png"
    terminal = invoke(
        "analyze",
        str(experiment),
        str(other),
        "--figures",
        str(figures),
        "--html",
        str(tmp_path / "both.html"),
    )
    assert terminal.exit_code == 0, terminal.output
    assert "what differs between the specs" in terminal.stdout
    assert "side by side" in terminal.stdout
    assert (figures / "compare-path-penalties.l2.png").exists()
    assert (figures / "compare-fronts.png").exists()
    report = (tmp_path / "both.html").read_text()
    assert "What differs between the specs" in report and report.count("<section>") == 2


def test_bad_and_foreign_parts_are_named_and_kept(experiment: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(experiment, copy)
    epochs = copy / "results" / "epochs"
    corrupt = epochs / "part-zzzz-corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    foreign = epochs / "notes.txt"
    foreign.write_text("hello")
    import pandas as pd

    alien = epochs / "part-zzzz-alien.parquet"
    pd.DataFrame({"trial_id": ["q"], "iteration": [1]}).to_parquet(alien)
    result = invoke("analyze", str(copy), "--json")
    assert result.exit_code == 0, result.output
    notes = "\n".join(json.loads(result.stdout)["experiments"][0]["notes"])
    for path in (corrupt, foreign, alien):
        assert f"{path}: skipped" in notes
        assert path.exists()  # never deleted
    assert json.loads(result.stdout)["experiments"][0]["n_trials"] == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "roc_auc"], "objective: unknown metric 'roc_auc'; metrics present: "),
        (["--metric", "nope"], "metric: unknown metric 'nope'; metrics present: "),
        (["--penalty", "l1"], "unknown swept parameter 'l1'; swept parameters: "),
        (["--objective", "val_acc:up"], "mode 'up' of metric 'val_acc' is not allowed"),
        (["--reference", "val_acc"], "--reference: 'val_acc' is not allowed"),
    ],
)
def test_unknown_names_exit_2_listing_what_is_there(
    experiment: Path, args: list[str], message: str
) -> None:
    result = invoke("analyze", str(experiment), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_missing_and_empty_experiments(tmp_path: Path) -> None:
    result = invoke("analyze", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "no results folder" in " ".join(result.output.split())
    empty = tmp_path / "empty"
    (empty / "results" / "epochs").mkdir(parents=True)
    result = invoke("analyze", str(empty))
    assert result.exit_code == 2
    assert "has no reported epochs yet" in " ".join(result.output.split())


def test_names_resolve_under_storage(experiment: Path) -> None:
    result = invoke("analyze", "quick", "--storage", str(experiment.parent), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["experiments"][0]["experiment"] == "quick"


def test_bad_output_targets_exit_2_naming_the_option(experiment: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "taken.txt"
    a_file.write_text("not a folder")
    a_folder = tmp_path / "a-folder"
    a_folder.mkdir()
    cases = [
        (["--figures", str(a_file)], f"--figures {a_file}: is a file, not a folder"),
        (["--html", str(a_folder)], f"--html {a_folder}: is a folder, not a file"),
        (["--html", str(a_file / "r.html")], f"--html {a_file / 'r.html'}: {a_file} is a file"),
    ]
    for args, message in cases:
        result = invoke("analyze", str(experiment), *args)
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert message in " ".join(result.output.split())
    # A write that fails anyway (a folder where a PNG goes) is named too, not a traceback.
    figures = tmp_path / "png"
    (figures / "quick-diagnosis.png").mkdir(parents=True)
    result = invoke("analyze", str(experiment), "--figures", str(figures))
    assert result.exit_code == 2, result.output
    assert f"--figures {figures}: cannot write there" in " ".join(result.output.split())
    assert a_file.read_text() == "not a folder"


def test_two_folders_of_the_same_name_stay_apart(experiment: Path, tmp_path: Path) -> None:
    from regtune.platform.analysis.compare import distinct_names

    other = tmp_path / "elsewhere" / "quick"
    spec = load_spec("quickstart", overrides=["penalties.l2={loguniform: [1e-8, 1.0]}"])
    write_experiment(str(other), CURVES, _configs(), spec=spec.to_dict())
    figures = tmp_path / "png"
    result = invoke("analyze", str(experiment), str(other), "--json", "--figures", str(figures))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    names = [e["experiment"] for e in data["experiments"]]
    assert names == [f"{experiment.parent.name}/quick", "elsewhere/quick"]
    diffs = {row["key"]: row for row in data["spec_differences"]}
    assert "1e-08" in diffs["penalties.l2"]["elsewhere/quick"]
    assert "1e-08" not in diffs["penalties.l2"][names[0]]
    for name in names:
        assert (figures / f"{name.replace('/', '_')}-diagnosis.png").exists()
    assert distinct_names(["q", "q", "r"], ["/a/q", "/a/q", "/b/r"]) == ["a/q", "a/q#2", "r"]


def test_a_two_epoch_grid_is_too_short_not_stopped_early(tmp_path: Path) -> None:
    """max_epochs 2, both trials finished: nothing stopped them early."""
    exp = tmp_path / "short"
    configs = {t: {"penalties": {"l2": l2}} for t, l2 in (("a", 1e-4), ("b", 1e-2))}
    write_experiment(str(exp), {"a": SHORT, "b": SHORT}, configs, max_t=2)
    result = invoke("analyze", str(exp), "--json")
    assert result.exit_code == 0, result.output
    (line,) = [v for v in json.loads(result.stdout)["experiments"][0]["verdict"] if "short" in v]
    assert line.startswith("2 trial(s) too short to diagnose (2 epochs < 3)")
    assert "early" not in line


def test_an_unknown_metric_lists_what_a_user_would_pick_and_suggests(tmp_path: Path) -> None:
    """A final report stores 48 reliability-bin columns and per-group intervals: the error
    lists them as patterns, not one by one, and suggests the closest name."""
    exp = tmp_path / "full"
    configs = {t: {"penalties": {"l2": l2}} for t, l2 in (("a", 1e-4), ("b", 1e-2))}
    final = {"a": final_report(), "b": final_report()}
    write_experiment(str(exp), {"a": HEALTHY, "b": OVERFIT}, configs, final=final)
    result = invoke("analyze", str(exp), "--objective", "bogus")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "test_reliability.bNN.{conf,acc,count}" in text and ".b03." not in text
    assert "test_selection_rate_<group>[_ci_{low,high}] (<group>: F, M)" in text
    assert len(text) < 400 and "did you mean" not in text
    result = invoke("analyze", str(exp), "--objective", "val_ac")
    assert result.exit_code == 2
    assert " ".join(result.output.split()).endswith("(did you mean 'val_acc'?)")


def test_terminal_output_fits_80_columns_with_hanging_indents(experiment: Path) -> None:
    result = invoke("analyze", str(experiment), width=80)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    verdict = [i for i, line in enumerate(lines) if line.startswith("-> ")]
    assert verdict and any(lines[i + 1].startswith("   ") for i in verdict)  # wrapped, indented
    # The front's title is one line; its numbers follow the table.
    assert any(line.strip() == "Pareto front" for line in lines)
    words = " ".join(result.stdout.split())
    assert "trials on the front, " in words and " excluded" in words
    assert "; hypervolume " in words.split("trials on the front, ", 1)[1]


#: A loss that barely leaves its start: a model held at one class.
_STUCK = {
    "train_loss": [0.100, 0.099, 0.098, 0.098, 0.097, 0.097, 0.097, 0.097],
    "val_loss": [0.101, 0.100, 0.099, 0.099, 0.098, 0.098, 0.098, 0.098],
}


def _constant_store(exp: Path, learned: bool) -> Path:
    """Two constant predictors (both group gaps exactly 0, "always no" on a 1.78%-positive
    label), and with ``learned`` a trial that tells the classes apart."""
    curves = {"k1": _STUCK, "k2": _STUCK, **({"h": HEALTHY} if learned else {})}
    l2 = {"k1": 0.1, "k2": 1.0, "h": 1e-5}
    gap = {"k1": 0.0, "k2": 0.0, "h": 0.04}
    acc = {"k1": 0.9822, "k2": 0.9822, "h": 0.95}
    configs = {t: {"penalties": {"l2": l2[t]}, "model": {"dropout": 0.1}} for t in curves}
    final = {t: {"val_acc": acc[t], "dp_diff": gap[t], "eo_diff": gap[t]} for t in curves}
    spec = load_spec("quickstart", overrides=["penalties.l2={loguniform: [1e-6, 1.0]}"])
    write_experiment(str(exp), curves, configs, spec=spec.to_dict(), final=final)
    return exp


def _words(text: str) -> str:
    """Terminal text as one line of words (wrapping and table borders removed)."""
    return " ".join(text.replace("│", " ").split())


def test_constant_predictors_only_no_best_and_why_the_front_is_empty(
    tmp_path: Path,
) -> None:
    from regtune.platform.results import SweepOutcome

    exp = _constant_store(tmp_path / "churn", learned=False)
    result = invoke("analyze", str(exp), width=80)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    text = _words(result.stdout)
    reason = SweepOutcome.from_path(str(exp)).no_best_reason()
    assert reason is not None and f"no best: {reason}" in text  # the sweep summary's words
    assert (
        "the front is empty: every trial was left out (2 degenerate: each predicts one class "
        "for every row; --include-degenerate keeps them)" in text
    )
    assert not any(line.strip() == "Pareto front" for line in lines)  # no blank table
    verdict = next(i for i, line in enumerate(lines) if line.startswith("-> "))
    assert _words(" ".join(lines[verdict : verdict + 2])).startswith(
        "-> all 2 trials are degenerate (each predicts one class for every row"
    )
    assert "healthy" not in text and "keep the range" not in text
    assert "degenerate 2 k1: degenerate: predicts one class for every row" in text
    assert "best trial:" not in text
    data = json.loads(invoke("analyze", str(exp), "--json").stdout)["experiments"][0]
    assert data["no_best"] == reason and data["best"] is None
    assert data["diagnosis"]["counts"] == {"degenerate": 2}
    assert data["front"]["n_front"] == 0 and data["front"]["empty"].startswith("the front is empty")


def test_constant_predictors_beside_a_learned_trial_are_counted_on_the_path(
    tmp_path: Path,
) -> None:
    exp = _constant_store(tmp_path / "mixed", learned=True)
    result = invoke("analyze", str(exp))
    assert result.exit_code == 0, result.output
    text = _words(result.stdout)
    assert "-> the top trial by val_acc, k1 (val_acc 0.9822), is degenerate: 2 of 3 trials" in text
    assert (
        "2 degenerate trial(s) (constant predictors) left out of the medians and the best; "
        "--include-degenerate keeps them" in text
    )
    assert "best trial: h" in text and "no best:" not in text
    assert "the front is empty" not in text and "1 of 3 trials on the front" in text
    # A strength tried only by constant predictors has no median: "-", not "nan".
    assert "nan" not in text.lower()
    data = json.loads(invoke("analyze", str(exp), "--json").stdout)["experiments"][0]
    best = [r for r in data["paths"]["penalties.l2"] if r["best"] and r["metric"] == "val_acc"]
    assert [r["strength"] for r in best] == [1e-5]
    assert data["no_best"] is None
    assert data["diagnosis"]["counts"] == {"degenerate": 2, "healthy": 1}


def _off_front_experiment(root: Path) -> Path:
    """Real Parquet: b and c tie on val_acc (0.93), b has the lower val loss (the best
    trial) but c the lower ece (the front); f failed after the best val_acc of all; o
    finished lower. b, c and o finished."""
    exp = root / "offfront"
    curves = {"b": HEALTHY, "c": HEALTHY, "f": OVERFIT, "o": OVERFIT}
    loss = {"b": 0.2, "c": 0.25, "f": 0.3, "o": 0.4}
    final = {
        "b": {"val_acc": 0.93, "ece": 0.08, "val_loss": loss["b"]},
        "c": {"val_acc": 0.93, "ece": 0.06, "val_loss": loss["c"]},
        "f": {"val_acc": 0.99, "ece": 0.01, "val_loss": loss["f"]},
        "o": {"val_acc": 0.80, "ece": 0.09, "val_loss": loss["o"]},
    }
    l2 = {"b": 1e-4, "c": 1e-3, "f": 1e-6, "o": 1e-2}
    configs = {t: {"penalties": {"l2": v}, "model": {"dropout": 0.1}} for t, v in l2.items()}
    spec = load_spec("quickstart").to_dict()
    write_experiment(str(exp), curves, configs, spec=spec, final=final, failed=["f"])
    return exp


def test_failed_trial_best_off_front_and_reference_in_every_output(tmp_path: Path) -> None:
    """The failed trial drives nothing and is said; the best trial the front does not hold
    says so under it; a reference no trial beats is said beside its hypervolume of 0 - in
    the JSON, the terminal and the HTML report."""
    exp = _off_front_experiment(tmp_path)
    report = tmp_path / "r.html"
    args = ["analyze", str(exp), "--reference", "val_acc=0.99", "--reference", "ece=0.5"]
    result = invoke(*args, "--json", "--html", str(report))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["experiments"][0]
    assert data["verdict"][0].startswith("1 of 4 trials failed (status error)")
    l2 = {row["strength"]: row for row in data["paths"]["penalties.l2"]}
    assert l2[1e-6]["n_failed"] == 1 and l2[1e-6]["n_trials"] == 0
    assert l2[1e-6]["median"] is None and not l2[1e-6]["best"]
    assert data["best"]["trial_id"] == "b"
    off = "not on the Pareto front: c dominates it (val_acc 0.93 vs 0.93, ece 0.06 vs 0.08)"
    assert any(n.startswith(off) for n in data["best"]["notes"])
    assert data["front"]["hypervolume"] == 0.0
    assert any(n.startswith("hypervolume 0: no trial on the front beats") for n in data["notes"])
    html = report.read_text()
    assert "not on the Pareto front: c dominates it" in html
    assert "hypervolume 0: no trial on the front beats the reference" in html
    assert "1 of 4 trials failed (status error)" in html
    terminal = invoke(*args)
    assert terminal.exit_code == 0, terminal.output
    text = " ".join(terminal.stdout.split())
    assert "not on the Pareto front: c dominates it" in text
    assert "1 failed trial(s) left out of the medians and the best" in text
    assert "hypervolume 0: no trial on the front beats" in text


def test_a_reference_key_that_is_not_an_objective_exits_2(tmp_path: Path) -> None:
    exp = _off_front_experiment(tmp_path)
    result = invoke(
        "analyze",
        str(exp),
        "--reference",
        "val_acc=0.5",
        "--reference",
        "ece=0.5",
        "--reference",
        "brier=1",
    )
    assert result.exit_code == 2, result.output
    assert (
        "reference: 'brier' is not an objective of this analysis; allowed: val_acc, ece"
        in " ".join(result.output.split())
    )


def test_the_api_says_what_the_cli_says_beside_the_front_once(tmp_path: Path) -> None:
    """analyze_experiment (the Python API) carries the front's note (hypervolume 0 against
    the reference) and the best trial's off-front line, as the CLI prints them, each once."""
    from regtune.platform.analysis.run import analyze_experiment

    exp = _off_front_experiment(tmp_path)
    reference = {"val_acc": 0.99, "ece": 0.5}
    analysis = analyze_experiment(str(exp), reference=reference)
    assert analysis.best is not None and analysis.best.trial_id == "b"
    off = "not on the Pareto front: c dominates it (val_acc 0.93 vs 0.93, ece 0.06 vs 0.08)"
    assert sum(n.startswith(off) for n in analysis.best.notes) == 1, analysis.best.notes
    hv0 = "hypervolume 0: no trial on the front beats"
    assert sum(n.startswith(hv0) for n in analysis.notes) == 1, analysis.notes
    args = ["analyze", str(exp), "--reference", "val_acc=0.99", "--reference", "ece=0.5"]
    data = json.loads(invoke(*args, "--json").stdout)["experiments"][0]
    assert data["notes"] == analysis.notes
    assert data["best"]["notes"] == analysis.best.notes
    text = " ".join(invoke(*args).stdout.split())
    assert text.count("not on the Pareto front: c dominates it") == 1
    assert text.count(hv0) == 1


def test_every_trial_left_out_says_so_in_place_of_the_empty_tables(tmp_path: Path) -> None:
    """Both trials lost their epochs 6-8 with an unreadable part (real Parquet, split and
    cut): the path and diagnosis tables would have no row; a sentence says why instead."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    exp = tmp_path / "lost"
    configs = {t: {"penalties": {"l2": v}} for t, v in (("b", 1e-3), ("c", 1e-2))}
    write_experiment(str(exp), {"b": HEALTHY, "c": HEALTHY}, configs)
    folder = exp / "results" / "epochs"
    (merged,) = sorted(folder.glob("part-*.parquet"))
    table = pq.read_table(merged)
    late = pc.greater(table["iteration"], 5)
    merged.unlink()
    pq.write_table(table.filter(pc.invert(late)), folder / "part-00000000000000000001-t-1.parquet")
    bad = folder / "part-00000000000000000002-t-2.parquet"
    pq.write_table(table.filter(late), bad)
    bad.write_bytes(bad.read_bytes()[:-100])
    result = invoke("analyze", str(exp))
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "path: penalties.l2 vs val_acc: no trial to draw: 2 left out (see the notes)" in text
    assert "diagnosis: no trial to diagnose: 2 left out (see the notes)" in text
    assert "strength" not in text  # no empty path table
    assert "b (epochs 6-8 of 8); c (epochs 6-8 of 8)" in text
    report = tmp_path / "r.html"
    result = invoke("analyze", str(exp), "--html", str(report))
    assert result.exit_code == 0, result.output
    html = report.read_text()
    assert "penalties.l2: no trial to draw: 2 left out (see the notes)" in html
    assert "no trial to diagnose: 2 left out (see the notes)" in html
    assert "trials per diagnosis" not in html


def test_one_trial_is_counted_in_the_singular(tmp_path: Path) -> None:
    exp = tmp_path / "single"
    write_experiment(str(exp), {"h": HEALTHY}, {"h": {"penalties": {"l2": 1e-4}}})
    result = invoke("analyze", str(exp))
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "1 trial; objective val_acc (max)" in text and "1 trials;" not in text


def test_invoke_sets_the_terminal_width_for_its_call_only(experiment: Path) -> None:
    """tests/platform/cli/invoke.py: the width asked for is the width printed at (the
    experiment's rule spans it), and the consoles get back the width they had."""
    from regtune.platform.cli.app import console, out

    before = (out._width, console._width)
    for width in (150, 60):
        result = invoke("analyze", str(experiment), width=width)
        assert result.exit_code == 0, result.output
        rule = next(line for line in result.stdout.splitlines() if " quick " in line)
        assert len(rule) == width
        assert (out._width, console._width) == before
