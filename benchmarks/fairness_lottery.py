"""Adult EO: do randomized thresholds (a per-group lottery, ``randomized:
true``) make the worst run of a split less bad than the current
deterministic thresholds, at mean accuracy >= 0.84? Validation only.

Run through the benchmark: ``python -m benchmarks.fairness_splits
--select-adult-eo-lottery [--scores-cache DIR]`` writes
``benchmarks/results/fairness_splits_selection_adult_eo_lottery.json``.

Why: on the test rows of split seeds 0-17 the current Adult EO method
(``lagrangian+postprocess``, strength 10, bound 0.02, margin 0.01,
deterministic thresholds on train+val) measured eo_diff 0.0176 mean over 54
runs, but 2 runs exceeded the 0.03 worst-case goal (0.0311, 0.0403) and the
mean of split seeds 15-17 was 0.0202. One threshold per group moves a group
along its ROC curve only, so it can hold both EO rates within the tolerance
only at some cost in accuracy; on Adult the FPR gap binds at the tolerance
(0.01) and lands about 0.007 higher on held-out rows (docs/fairness_benchmark.md,
"How the Adult EO method was chosen"). A lottery meets both rates at any
tolerance as a linear programme (:mod:`regtune.trainables.threshold_lottery`),
so it can hold a smaller tolerance at the same accuracy. It was chosen for
German and COMPAS in the fourth selection and never assessed for Adult EO
(the method met its goals on the issue's split seeds).

Protocol (written down and committed before any of its runs):

- Runs: split seeds :data:`SPLIT_SEEDS` x training seeds :data:`SEEDS`, the
  seed-ensemble assessment's runs: the current config trained once per run
  (:func:`~benchmarks.fairness_ensemble.member_logits`, the raw logits of
  the kept model on the training and validation splits; the test split is
  never scored). Its member 0 is the same config and seed, so the current
  method's held-out numbers here should reproduce that record's.
- Halvings: :data:`HALVINGS` stratified halvings of each validation split
  (those of the earlier assessments). Per halving, group temperatures are
  fitted on the fitting half's logits (the trainer fits them on
  validation), and every candidate is fitted on the scaled positive-class
  scores of the training rows plus the fitting half (``threshold_rows:
  train+val``) and scored on the other half. A lottery decides held-out rows
  by the platform's own draw
  (:func:`regtune.trainables.lottery_draws.apply_lottery`: a hash of each
  row's score, as a server decides).
- Candidates (:data:`CANDIDATES`): the current deterministic fit at
  tolerance 0.01 (bound 0.02, margin 0.01), and lotteries at tolerance
  0.01, 0.005 and 0 (margins 0.01, 0.015, 0.02).
- Measures (as the seed-ensemble assessment): per candidate the held-out
  accuracy, eo_diff, |TPR gap|, |FPR gap| over all runs and halvings; per
  split seed and halving the **worst of the split's three runs** on the
  same held-out half (its mean: ``worst_of_seeds_mean``). ECE is the same
  for every candidate (thresholds do not change the probabilities); it is
  reported, not a condition.
- Rule (:data:`RULE`): among the lotteries with mean held-out accuracy >=
  0.84, mean held-out eo_diff no higher than the current method's and a
  lower ``worst_of_seeds_mean``: the lowest ``worst_of_seeds_mean``. None:
  keep the current method.
- If a lottery is chosen, it becomes the benchmark's Adult EO method from
  the next re-check round on (split seeds no run has used), with the
  current method run beside it on the same rows, and both are reported;
  the rows of split seeds 0-17 stay as they were measured.

Added to read and not to choose by: the paired differences from the current
method (same run and half; worst of a split's seeds: same split and
halving) with 95% t-intervals (``paired_vs_current``).

Every Adult EO test number so far (split seeds 0-17) had been read before
this protocol was written: they are why it was written, and they set none
of its candidates, tolerances or rule (the tolerances are the earlier
assessments' grid; the rule is the seed-ensemble assessment's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.fairness_ensemble import (
    SEEDS,
    SPLIT_SEEDS,
    beats_current,
    cached_member,
    paired_vs_current,
    pool_runs,
    summary,
)
from benchmarks.fairness_selection import (
    ADULT_EO_BASELINE,
    ADULT_EO_HALVINGS,
    ADULT_EO_MIN_ACC,
    _rates,
    stratified_halves,
)

__all__ = [
    "CANDIDATES",
    "RULE",
    "choose",
    "heldout",
    "select_adult_eo_lottery",
]

HALVINGS = ADULT_EO_HALVINGS
#: Candidates: name -> (randomized, tolerance). The first is the current method.
CANDIDATES: dict[str, tuple[bool, float]] = {
    ADULT_EO_BASELINE: (False, 0.01),
    "lottery, margin 0.01": (True, 0.01),
    "lottery, margin 0.015": (True, 0.005),
    "lottery, margin 0.02": (True, 0.0),
}
RULE = (
    f"among lotteries with mean held-out acc >= {ADULT_EO_MIN_ACC}, a mean held-out eo_diff "
    "no higher than the current method's and a lower mean worst-of-a-split's-seeds held-out "
    "eo_diff: the lowest worst-of-seeds; none: keep the current method"
)


def heldout(
    member: Mapping[str, Any],
    candidates: Mapping[str, tuple[bool, float]] = CANDIDATES,
    halvings: int = HALVINGS,
) -> dict[str, list[dict[str, float]]]:
    """Each candidate's held-out numbers on one run (``member``: its
    :func:`~benchmarks.fairness_ensemble.member_logits`) over ``halvings``
    halvings of its validation split: group temperatures fitted on one half,
    thresholds or a lottery fitted on the scaled scores of the training rows
    plus that half, decisions and ECE on the other half."""
    from regtune.trainables.calibration import fit_temperatures, scale_logits
    from regtune.trainables.lottery_draws import apply_lottery
    from regtune.trainables.metrics import expected_calibration_error
    from regtune.trainables.threshold_lottery import fit_lottery
    from regtune.trainables.thresholds import apply_thresholds, fit_thresholds

    tr, va = member["train"], member["val"]
    z_all = torch.from_numpy(np.concatenate([tr["z"], va["z"]]))
    s_all = torch.from_numpy(np.concatenate([tr["s"], va["s"]])).long()
    n_train = tr["y"].shape[0]
    out: dict[str, list[dict[str, float]]] = {name: [] for name in candidates}
    zv, yv, sv = (torch.from_numpy(va[k]) for k in ("z", "y", "s"))
    for h in range(halvings):
        fit_rows, held = stratified_halves(va["y"], va["s"], h)
        temps = fit_temperatures(zv[fit_rows], yv[fit_rows].long(), sv[fit_rows].long(), 2)
        p_all = scale_logits(z_all, temps, s_all).softmax(dim=1)[:, 1].double()
        p_tr, p_va = p_all[:n_train], p_all[n_train:]
        ece = expected_calibration_error(
            scale_logits(zv[held], temps, sv[held].long()).softmax(dim=1), yv[held].long()
        )
        p = torch.cat([p_tr, p_va[fit_rows]])
        y = torch.from_numpy(np.concatenate([tr["y"], va["y"][fit_rows]]))
        s = torch.from_numpy(np.concatenate([tr["s"], va["s"][fit_rows]]))
        for name, (randomized, tolerance) in candidates.items():
            extra: dict[str, float] = {}
            if randomized:
                lot = fit_lottery(p, y, s, 2, kind="eo", tolerance=tolerance)
                pred = apply_lottery(p_va[held], va["s"][held], lot.thresholds, lot.weights)
                fit_gap, fit_acc, feasible = lot.gap, lot.accuracy, lot.feasible
                extra["fit_realized_gap"] = lot.realized_gap
            else:
                det = fit_thresholds(p, y, s, 2, kind="eo", tolerance=tolerance)
                pred = apply_thresholds(
                    p_va[held], torch.from_numpy(va["s"][held]), det.thresholds
                ).numpy()
                fit_gap, fit_acc, feasible = det.gap, det.accuracy, det.feasible
                extra["fit_realized_gap"] = det.gap
            row = _rates(np.asarray(pred), va["y"][held], va["s"][held])
            row.update(
                abs_fpr_gap=abs(row["fpr_gap"]),
                abs_tpr_gap=abs(row["tpr_gap"]),
                halving=float(h),
                ece=ece,
                fit_gap=fit_gap,
                fit_acc=fit_acc,
                feasible=float(feasible),
                **extra,
            )
            out[name].append(row)
    return out


def choose(summaries: Mapping[str, Mapping[str, float]]) -> tuple[str, str]:
    """:data:`RULE` over per-candidate summaries: (name, why)."""
    eligible = beats_current(summaries)
    if not eligible:
        return ADULT_EO_BASELINE, (
            f"no lottery had mean held-out acc >= {ADULT_EO_MIN_ACC}, a mean eo_diff no higher "
            "and a lower worst-of-seeds than the current method: kept"
        )
    pick = min(eligible, key=lambda n: summaries[n]["worst_of_seeds_mean"])
    return pick, f"{len(eligible)} lottery(ies) met the rule; the lowest worst-of-seeds"


def select_adult_eo_lottery(
    current: Mapping[str, Any],
    split_seeds: Sequence[int] = SPLIT_SEEDS,
    seeds: Sequence[int] = SEEDS,
    *,
    smoke: bool = False,
    cache: Path | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The assessment of the module docstring: per run, each candidate's
    held-out summary; over all runs, the summaries, the paired differences
    and the choice by :data:`RULE`."""
    candidates = dict(CANDIDATES)
    halvings = 2 if smoke else HALVINGS
    runs: dict[str, dict[str, Any]] = {}
    record: dict[str, Any] = {
        "protocol": __doc__,
        "rule": RULE,
        "config": dict(current),
        "candidates": {n: {"randomized": r, "tolerance": t} for n, (r, t) in candidates.items()},
        "split_seeds": list(split_seeds),
        "seeds": list(seeds),
        "halvings": halvings,
        "runs": runs,
        "smoke_test": smoke,
        "complete": False,
    }

    def one_run(split_seed: int, seed: int) -> tuple[dict[str, list[dict[str, float]]], dict]:
        member = cached_member(current, split_seed, seed, smoke=smoke, cache=cache)
        return heldout(member, candidates, halvings), {"kept_epoch": member["kept_epoch"]}

    pooled, worst = pool_runs(
        split_seeds, seeds, list(candidates), one_run, runs, lambda: on_run and on_run(record)
    )
    summaries = {n: summary(pooled[n], worst[n]) for n in candidates}
    for name, rows in pooled.items():
        summaries[name]["fit_realized_gap_mean"] = float(
            np.mean([r["fit_realized_gap"] for r in rows])
        )
    record["paired_vs_current"] = paired_vs_current(pooled, worst)
    if smoke:
        chosen, why = ADULT_EO_BASELINE, "smoke test: no choice"
    else:
        chosen, why = choose(summaries)
    record.update(summary=summaries, chosen=chosen, why=why, complete=True)
    return record
