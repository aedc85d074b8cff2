"""``regtune analyze`` (analyze_experiment) reads an experiment's stored spec once: the
columns to read depend on it, and load_experiment takes the spec already read
(stored_spec) instead of reading it again. Its problems are still the analysis' notes, once
each: the keys a lenient read left out, or why there is no spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regtune.platform.analysis.load import MSG_NO_SPEC, load_experiment, stored_spec
from regtune.platform.analysis.run import analyze_experiment
from regtune.platform.results.files import ResultsLocation
from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import HEALTHY, OVERFIT, write_experiment
from tests.platform.cli.invoke import invoke

CURVES = {"a": HEALTHY, "b": OVERFIT}
CONFIGS = {"a": {"penalties": {"l2": 1e-4}}, "b": {"penalties": {"l2": 1e-2}}}


def _spec_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The stored spec files read from now on (every ResultsLocation.read_bytes of one)."""
    reads: list[str] = []
    read_bytes = ResultsLocation.read_bytes

    def counting(self: ResultsLocation, path: str) -> bytes:
        if path == self.spec:
            reads.append(path)
        return read_bytes(self, path)

    monkeypatch.setattr(ResultsLocation, "read_bytes", counting)
    return reads


def _store(path: Path, *, extra_key: bool = False) -> str:
    spec = load_spec("quickstart").to_dict()
    if extra_key:
        spec["bogus_key"] = 1  # a key this version does not know: read without it
    write_experiment(str(path), CURVES, CONFIGS, spec=spec)
    if extra_key:  # the writer checks nothing: make sure the key is stored
        stored = path / "results" / "spec.json"
        assert "bogus_key" in json.loads(stored.read_text())
    return str(path)


def test_analyze_reads_the_spec_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = _store(tmp_path / "exp")
    reads = _spec_reads(monkeypatch)
    analysis = analyze_experiment(exp)
    assert analysis.spec is not None and len(reads) == 1, reads
    reads.clear()
    result = invoke("analyze", exp, "--json")
    assert result.exit_code == 0, result.output
    assert len(reads) == 1, reads


def test_the_spec_read_once_still_says_its_problems_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = _store(tmp_path / "lenient", extra_key=True)
    reads = _spec_reads(monkeypatch)
    analysis = analyze_experiment(exp)
    assert len(reads) == 1, reads
    assert analysis.spec is not None
    said = [n for n in analysis.notes if "read without the keys named here: bogus_key" in n]
    assert len(said) == 1, analysis.notes
    # As load_experiment says it when it reads the spec itself.
    alone = load_experiment(exp, columns=["val_acc"])
    assert [n for n in alone.notes if "bogus_key" in n] == said


def test_no_spec_is_a_note_and_the_given_spec_is_used(tmp_path: Path) -> None:
    exp = _store(tmp_path / "nospec")
    (tmp_path / "nospec" / "results" / "spec.json").unlink()
    analysis = analyze_experiment(exp)
    assert analysis.spec is None
    assert (
        sum(n.startswith(MSG_NO_SPEC.split("{reason}")[0].format(exp=exp)) for n in analysis.notes)
        == 1
    )
    given = stored_spec(exp)
    assert given.spec is None and len(given.notes) == 1
    loaded = load_experiment(exp, columns=["val_acc"], spec=given)
    assert loaded.spec is None and loaded.notes.count(given.notes[0]) == 1
