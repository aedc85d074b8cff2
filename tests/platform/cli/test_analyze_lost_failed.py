"""regtune analyze counts a failed trial whose stored epochs were all lost (to an
unreadable part) among the failed, as it would with its epochs: the header, --json and the
verdict's "k of N trials failed" agree, and that N is every trial."""

from __future__ import annotations

import json
from pathlib import Path

from regtune.platform.analysis.run import analyze_experiment
from tests.platform.cli.invoke import invoke
from tests.platform.results.conftest import tune_result
from tests.platform.results.test_store import _config, _metrics, _writer


def _store(exp: str) -> None:
    """t1 (error) has its 2 epochs alone in a part made unreadable; t2 and t4 finished
    with 3 epochs each; t3 failed before its first epoch."""
    w = _writer(exp, flush_s=1e9)
    for i in (1, 2):
        w.add("t1", tune_result(i, _config(1e-4), **_metrics(0.5 + 0.1 * i)))
    w.flush(trials=False)
    for i in (1, 2, 3):
        w.add("t2", tune_result(i, _config(1e-3), **_metrics(0.5 + 0.1 * i)))
    w.flush(trials=False)
    for i in (1, 2, 3):
        w.add("t4", tune_result(i, _config(1e-2), **_metrics(0.4 + 0.1 * i)))
    w.end_trial("t1", error=True, config=_config(1e-4))
    w.end_trial("t2", error=False, config=_config(1e-3))
    w.end_trial("t4", error=False, config=_config(1e-2))
    w.end_trial("t3", error=True, config=_config(1e-5))
    w.flush(trials=True)
    parts = sorted((Path(exp) / "results" / "epochs").glob("*.parquet"))
    parts[0].write_bytes(b"garbage")  # t1's rows, and only them


def test_a_failed_trial_that_lost_every_epoch_counts_as_failed_everywhere(
    tmp_path: Path,
) -> None:
    exp = str(tmp_path / "store")
    _store(exp)
    result = invoke("analyze", exp, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["experiments"][0]
    assert data["n_trials"] == 4
    assert data["incomplete"] == {"t1": "all 2 epochs"}
    assert data["failed"] == ["t1", "t3"]
    assert data["n_failed"] == 2
    assert data["verdict"][0].startswith("2 of 4 trials failed (status error)")
    text = " ".join(invoke("analyze", exp).output.split())
    assert "4 trials; objective" in text
    assert "2 of 4 trials failed (status error)" in text


def test_the_verdict_total_counts_a_trial_that_lost_some_epochs(tmp_path: Path) -> None:
    """t2 lost its first epochs (its part was unreadable) and failed: it stays in the
    summary, off the diagnosis, and counts in the verdict's total and failed."""
    exp = str(tmp_path / "store")
    w = _writer(exp, flush_s=1e9)
    w.add("t2", tune_result(1, _config(1e-3), **_metrics(0.5)))
    w.flush(trials=False)
    for i in (2, 3):
        w.add("t2", tune_result(i, _config(1e-3), **_metrics(0.5 + 0.1 * i)))
    for i in (1, 2, 3):
        w.add("t1", tune_result(i, _config(1e-4), **_metrics(0.4 + 0.1 * i)))
        w.add("t4", tune_result(i, _config(1e-2), **_metrics(0.3 + 0.1 * i)))
    w.end_trial("t1", error=False, config=_config(1e-4))
    w.end_trial("t2", error=True, config=_config(1e-3))
    w.end_trial("t4", error=False, config=_config(1e-2))
    w.flush(trials=True)
    parts = sorted((Path(exp) / "results" / "epochs").glob("*.parquet"))
    parts[0].write_bytes(b"garbage")
    analysis = analyze_experiment(exp)
    assert set(analysis.incomplete) == {"t2"}
    assert analysis.n_trials == 3
    assert analysis.failed == ["t2"]
    assert analysis.verdict[0].startswith("1 of 3 trials failed (status error)")


def test_no_best_reason_counts_a_trial_with_no_epoch_beside_incomplete_ones(
    tmp_path: Path,
) -> None:
    """t1 lost its first epoch (finished), t3 failed before its first: 'every trial lost
    stored epochs' would leave t3 out; the reason counts it."""
    exp = str(tmp_path / "store")
    w = _writer(exp, flush_s=1e9)
    w.add("t1", tune_result(1, _config(1e-4), **_metrics(0.5)))
    w.flush(trials=False)
    for i in (2, 3):
        w.add("t1", tune_result(i, _config(1e-4), **_metrics(0.5 + 0.1 * i)))
    w.end_trial("t1", error=False, config=_config(1e-4))
    w.end_trial("t3", error=True, config=_config(1e-5))
    w.flush(trials=True)
    parts = sorted((Path(exp) / "results" / "epochs").glob("*.parquet"))
    parts[0].write_bytes(b"garbage")
    analysis = analyze_experiment(exp)
    assert analysis.best is None
    assert analysis.n_trials == 2
    assert analysis.failed == ["t3"]
    reason = analysis.no_best_reason()
    assert reason is not None
    assert not reason.startswith("every trial (1) lost stored epochs")
    assert reason.endswith("(of those left after the 1 with stored epochs lost)")
