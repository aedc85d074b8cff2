"""The ``median`` scheduler does what docs/sweeps.md says: Tune's median stopping
rule compares a trial's best value with the median of the other trials'
running means, not with their values at the same epoch.

Real Tune ``Trial`` objects and the scheduler :func:`build_scheduler` makes
from a spec; no cluster is needed because a scheduler only sees trials and
results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers.trial_scheduler import TrialScheduler

from regtune.platform.tune.sweep import build_scheduler
from regtune.search_spaces import load_spec
from tests.platform.tune.stubs import stub_trial as _trial

DOCS = Path(__file__).resolve().parents[3] / "docs" / "sweeps.md"
CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


class _NoneWaiting:
    """What the rule asks Tune's controller when too few others have reached an
    epoch (whether trials wait to run, to yield to them): here none do."""

    def get_live_trials(self) -> list[Trial]:
        return []


def _median() -> Any:
    spec = load_spec(
        {
            "name": "median",
            "dataset": "digits",
            "model": {"arch": "mlp", "width": 16},
            "penalties": {"l2": {"loguniform": [1e-6, 1e-2]}},
            "scheduler": {"kind": "median", "grace_period": 1, "min_samples_required": 3},
            "searcher": {"kind": "random", "seed": 0},
            "budget": {"samples": 4, "max_epochs": 3},
        }
    )
    scheduler = build_scheduler(spec)
    scheduler.set_search_properties("val_acc", "max")
    return scheduler


def _run(tmp_path: Path, mine: tuple[float, ...]) -> list[str]:
    """The decisions on a trial reporting ``mine`` at epochs 1, 2, ... after
    three others reported val_acc 0.1, 0.5, 0.9 at epochs 1-3."""
    scheduler, controller = _median(), _NoneWaiting()
    others = [_trial(tmp_path, f"o{i}") for i in range(3)]
    trial = _trial(tmp_path, "x")
    for t in [*others, trial]:
        scheduler.on_trial_add(controller, t)
    for epoch, acc in enumerate((0.1, 0.5, 0.9), start=1):
        for other in others:
            scheduler.on_trial_result(
                controller, other, {"training_iteration": epoch, "val_acc": acc}
            )
    return [
        scheduler.on_trial_result(controller, trial, {"training_iteration": epoch, "val_acc": acc})
        for epoch, acc in enumerate(mine, start=1)
    ]


def test_a_trial_below_the_others_at_the_same_epoch_continues_above_their_running_mean(
    tmp_path: Path,
) -> None:
    # At epoch 3 every other trial is at 0.9, but their running mean is 0.5
    # and this trial's best is 0.6: it continues (docs/sweeps.md's example).
    assert _run(tmp_path, (0.2, 0.55, 0.6)) == [CONTINUE, CONTINUE, CONTINUE]


def test_a_trial_whose_best_is_below_the_median_running_mean_stops(tmp_path: Path) -> None:
    # Epoch 1: best 0.05 < 0.1, the others' mean over epoch 1.
    assert _run(tmp_path, (0.05,)) == [STOP]


def test_the_docs_describe_the_rule_tune_applies() -> None:
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    row = next(line for line in text.split("| `") if line.startswith("median` |"))
    assert "at the same epoch" not in row.replace("does not compare values at the same epoch", "")
    assert "*best* value so far is worse than the median of the other trials' *running means*" in (
        row
    )
    assert "let a trial at 0.2, 0.55, 0.6 continue at epoch 3" in row
