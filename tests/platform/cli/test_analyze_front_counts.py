"""regtune analyze: what the front's numbers rest on is said beside them.

The side-by-side table of several experiments puts each hypervolume next to its own
reference point (each is measured against its experiment's own), and an empty front as
'-' with why, never 0; --json gives an empty front no reference and no hypervolume
(null: nothing was computed); the terminal's front line counts the trials left out and
why, as the HTML report does; and the verdict names the trials with no value of the
objective rather than advising more trials when those trials exist.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import HEALTHY, OVERFIT, write_experiment
from tests.platform.cli.invoke import invoke

L2 = {"a": 1e-6, "b": 1e-5, "c": 1e-4, "d": 1e-3, "e": 3e-3, "f": 1e-2}
CURVES = {t: (HEALTHY if i % 2 else OVERFIT) for i, t in enumerate(L2)}


def _store(path: Path, final: dict[str, dict[str, float]] | None = None) -> Path:
    configs = {t: {"penalties": {"l2": v}, "model": {"dropout": 0.1}} for t, v in L2.items()}
    spec = load_spec("quickstart").to_dict()
    write_experiment(str(path), CURVES, configs, spec=spec, final=final)
    return path


def _words(text: str) -> str:
    return " ".join(text.split())


def test_side_by_side_shows_each_reference_and_an_empty_front_as_a_dash(
    tmp_path: Path,
) -> None:
    good = _store(tmp_path / "good")
    # Every trial ends with no ece: the front (val_acc, ece) is empty.
    nan = _store(tmp_path / "noece", final={t: {"ece": math.nan} for t in L2})
    result = invoke("analyze", str(good), str(nan))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "side by side" in line)
    assert "against its own reference" in lines[header]
    assert "reference" in lines[header + 2] and "hypervolume" in lines[header + 2]
    row = {name: [" ".join(cell) for cell in cells] for name, cells in _rows(lines).items()}
    cells = row["good"]
    # One reference value a line, each whole.
    assert re.fullmatch(r"val_acc=[0-9.e+-]+ ece=[0-9.e+-]+", cells[5]), cells[5]
    empty = row["noece"]
    assert empty[4].startswith("- (the front is empty: every trial was left out (6 with no value")
    assert empty[5] == "-"
    assert "0" not in empty[4].split("(")[0]


def _rows(lines: list[str]) -> dict[str, list[list[str]]]:
    """The side-by-side table's rows by their first cell (its lines joined: a name folds
    mid-word), each a list of its cells' lines. A row starts at a line with a number of
    trials (one line long) and goes on until the next."""
    rows: list[list[list[str]]] = []
    for line in lines:
        if not line.startswith("│ "):
            continue
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells[1] or not rows:
            rows.append([[] for _ in cells])
        for parts, cell in zip(rows[-1], cells, strict=True):
            if cell:
                parts.append(cell)
    return {"".join(row[0]): row for row in rows}


def test_side_by_side_keeps_every_number_whole_at_80_columns(tmp_path: Path) -> None:
    """At 80 columns the names fold and the numbers stay whole, each on one line: a
    reference cut to ``val_acc=0.7…`` could not be compared with the next row's."""
    names = ["l2-path-20261130-120000-ab12", "quickstart-20261130-120512-9f3c"]
    paths = [str(_store(tmp_path / name)) for name in names]
    data = json.loads(invoke("analyze", *paths, "--json").stdout)["experiments"]
    result = invoke("analyze", *paths, width=80)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("└"))]
    assert "…" not in "\n".join(table)
    row = _rows(table)
    for name, analysis in zip(names, data, strict=True):
        assert name in row, row  # folded, not cut
        cells = row[name]
        assert cells[3] == [f"val_acc={analysis['best']['metrics']['val_acc']:.4g}"]
        assert cells[4] == [f"{analysis['front']['hypervolume']:.4g}"]
        reference = analysis["front"]["reference"].items()
        assert cells[5] == [f"{metric}={point:.4g}" for metric, point in reference]


def test_empty_front_json_has_no_reference_and_no_hypervolume(tmp_path: Path) -> None:
    nan = _store(tmp_path / "noece", final={t: {"ece": math.nan} for t in L2})
    result = invoke("analyze", str(nan), "--json")
    assert result.exit_code == 0, result.output
    front = json.loads(result.stdout)["experiments"][0]["front"]
    assert front["n_front"] == 0 and front["empty"].startswith("the front is empty")
    # The keys stay; nothing was computed, so they are null (not ones, not 0).
    assert "reference" in front and front["reference"] is None
    assert "hypervolume" in front and front["hypervolume"] is None


#: Three trials report test_acc; three (a, e, f) ran but never did.
PARTIAL = {"b": {"test_acc": 0.90}, "c": {"test_acc": 0.95}, "d": {"test_acc": 0.92}}


def test_front_line_counts_the_excluded_trials_and_why(tmp_path: Path) -> None:
    exp = _store(tmp_path / "partial", final=PARTIAL)
    result = invoke("analyze", str(exp), "--objective", "test_acc")
    assert result.exit_code == 0, result.output
    text = _words(result.stdout)
    assert (
        "1 of 6 trials on the front, 2 dominated, 3 excluded (3 with no value of test_acc); "
        "hypervolume" in text
    )


def test_verdict_names_the_trials_without_the_objective_instead_of_asking_for_more(
    tmp_path: Path,
) -> None:
    exp = _store(tmp_path / "partial", final=PARTIAL)
    data = json.loads(invoke("analyze", str(exp), "--objective", "test_acc", "--json").stdout)
    verdict = " ".join(data["experiments"][0]["verdict"])
    assert "3 trials have no test_acc (a, e, f)" in verdict
    assert "add trials" not in verdict
