"""Adult EO: does post-processing an unconstrained model keep more accuracy
than post-processing the Lagrangian-trained one, so that the tolerance can
be tightened at accuracy >= 0.84? Validation only.

Run through the benchmark: ``python -m benchmarks.fairness_splits
--select-adult-eo-base [--scores-cache DIR]`` writes
``benchmarks/results/fairness_splits_selection_adult_eo_base.json``.

Why: Adult EO's worst test run (0.030-0.031 eo_diff) sits just over the
0.03 goal. Tightening the threshold tolerance from 0.01 to 0.005 lowers the
gap but cost the current method held-out accuracy 0.837, under the 0.84 goal
(docs/fairness_benchmark.md, "How the Adult EO method was chosen"). A more accurate
model before the thresholds would pay for it.

Protocol (written down and committed before any of its runs):

- Runs: split seeds :data:`SPLIT_SEEDS` x training seeds :data:`SEEDS`, the
  runs of the robust and cross-fitted assessments. Each base config is
  trained once per run; the kept, calibrated model's training and
  validation scores are kept (:func:`~benchmarks.fairness_selection.adult_eo_scores`;
  the test split is never scored).
- Bases (:data:`BASES`): the current one (``lagrangian+postprocess``,
  strength 10, dual_lr 1) and the same network, training and calibration
  with ``method: postprocess`` (no fairness term in training).
- Candidates (:data:`CANDIDATES`): each base with thresholds fitted on the
  training rows plus one validation half at tolerance 0.01 (margin 0.01) and
  0.005 (margin 0.015), scored on the other half over :data:`HALVINGS`
  stratified halvings per run
  (:func:`~benchmarks.fairness_selection.adult_eo_heldout`).
- Rule (:data:`RULE`): among candidates with mean held-out accuracy >= 0.84
  whose mean held-out |FPR gap| is lower than the current method's (current
  base, tolerance 0.01) and whose mean held-out eo_diff is not higher: the
  lowest mean |FPR gap| (ties: the more accurate). None: keep the current
  method. (|FPR gap| is measured on about 750 negatives per group and half;
  eo_diff on halves is dominated by the 85 women earning >50K in a half, so
  it is a guard, not the target.)

Every Adult EO test number so far (split seeds 0-5) had been read before
this protocol was written; they set none of its values.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.fairness_selection import (
    ADULT_EO_BASELINE,
    ADULT_EO_HALVINGS,
    ADULT_EO_MIN_ACC,
    ADULT_EO_SEEDS,
    ADULT_EO_SPLIT_SEEDS,
    _cached_scores,
    adult_eo_heldout,
    adult_eo_summary,
    cache_path,
)

__all__ = ["BASES", "CANDIDATES", "RULE", "base_configs", "choose", "select_adult_eo_base"]

SPLIT_SEEDS = ADULT_EO_SPLIT_SEEDS
SEEDS = ADULT_EO_SEEDS
HALVINGS = ADULT_EO_HALVINGS
CURRENT, UNCONSTRAINED = "lagrangian 10", "postprocess only"
#: Base trainings: name -> the ``penalties.fairness`` keys replacing the current config's.
BASES: dict[str, dict[str, Any] | None] = {
    CURRENT: None,
    UNCONSTRAINED: {"kind": "eo", "method": "postprocess", "bound": 0.02, "margin": 0.01},
}
#: Candidates: name -> (base, tolerance). The first is the current method.
CANDIDATES: dict[str, tuple[str, float]] = {
    ADULT_EO_BASELINE: (CURRENT, 0.01),
    f"{CURRENT}, margin 0.015": (CURRENT, 0.005),
    f"{UNCONSTRAINED}, margin 0.01": (UNCONSTRAINED, 0.01),
    f"{UNCONSTRAINED}, margin 0.015": (UNCONSTRAINED, 0.005),
}
RULE = (
    "among candidates with mean held-out acc >= 0.84 whose mean held-out |FPR gap| is lower "
    "than the current method's and whose mean held-out eo_diff is not higher: the lowest mean "
    "|FPR gap| (ties: the more accurate); none: keep the current method"
)


def base_configs(current: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each base's training config, from the benchmark's current Adult EO config."""
    out = {}
    for name, fairness in BASES.items():
        cfg = copy.deepcopy(dict(current))
        if fairness is not None:
            cfg["penalties"] = {**cfg.get("penalties", {}), "fairness": dict(fairness)}
        out[name] = cfg
    return out


def choose(summaries: Mapping[str, Mapping[str, float]]) -> tuple[str, str]:
    """:data:`RULE` over per-candidate summaries: (name, why)."""
    base = summaries[ADULT_EO_BASELINE]
    better = [
        n
        for n, m in summaries.items()
        if n != ADULT_EO_BASELINE
        and m["acc_mean"] >= ADULT_EO_MIN_ACC
        and m["abs_fpr_gap_mean"] < base["abs_fpr_gap_mean"]
        and m["eo_diff_mean"] <= base["eo_diff_mean"]
    ]
    if not better:
        return ADULT_EO_BASELINE, (
            f"no candidate had mean held-out acc >= {ADULT_EO_MIN_ACC}, a lower mean |FPR gap| "
            "and a mean eo_diff no higher than the current method's: kept"
        )
    name = min(better, key=lambda n: (summaries[n]["abs_fpr_gap_mean"], -summaries[n]["acc_mean"]))
    return name, f"{len(better)} candidate(s) met the rule; the lowest mean held-out |FPR gap|"


def select_adult_eo_base(
    current: Mapping[str, Any],
    split_seeds: Sequence[int] = SPLIT_SEEDS,
    seeds: Sequence[int] = SEEDS,
    *,
    smoke: bool = False,
    cache: Path | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The assessment of the module docstring: per run, each candidate's
    held-out summary; over all runs, the summaries and the choice by :data:`RULE`."""
    configs = base_configs(current)
    runs: dict[str, dict[str, Any]] = {}
    pooled: dict[str, list[dict[str, float]]] = {n: [] for n in CANDIDATES}
    halvings = 2 if smoke else HALVINGS
    record: dict[str, Any] = {
        "protocol": __doc__,
        "rule": RULE,
        "bases": configs,
        "candidates": {n: {"base": b, "tolerance": t} for n, (b, t) in CANDIDATES.items()},
        "split_seeds": list(split_seeds),
        "seeds": list(seeds),
        "halvings": halvings,
        "runs": runs,
        "smoke_test": smoke,
        "complete": False,
    }
    for split_seed in split_seeds:
        for seed in seeds:
            held: dict[str, list[dict[str, float]]] = {}
            kept: dict[str, Any] = {}
            for base, cfg in configs.items():
                path = (
                    None if cache is None else cache_path(cache, cfg, split_seed, seed, smoke=smoke)
                )
                scores = _cached_scores(cfg, split_seed, seed, smoke=smoke, path=path)
                kept[base] = scores["kept_epoch"]
                wanted = {n: (t, None) for n, (b, t) in CANDIDATES.items() if b == base}
                held.update(adult_eo_heldout(scores, seed, wanted, halvings))
            for name in CANDIDATES:
                pooled[name] += held[name]
            runs[f"{split_seed}/{seed}"] = {
                "kept_epoch": kept,
                "candidates": {n: adult_eo_summary(rows) for n, rows in held.items()},
            }
            if on_run is not None:
                on_run(record)
    summaries = {n: adult_eo_summary(rows) for n, rows in pooled.items()}
    chosen, why = choose(summaries)
    record.update(summary=summaries, chosen=chosen, why=why, complete=True)
    return record
