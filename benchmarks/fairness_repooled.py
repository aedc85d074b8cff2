"""German/COMPAS, the fifth selection: the fourth selection's candidates and
rule, pooled over the hold-out numbers of split seeds 0-14 instead of 0-8.
Validation only: nothing is trained and no test row is loaded here.

Run: ``python -m benchmarks.fairness_splits --select-repooled`` reads the
selection records of split seeds 0-14
(``fairness_splits_selection_<dataset>{,_fresh,_fresh2,_fresh3,_fresh4}.json``;
each holds every candidate's and fairlearn contender's hold-out numbers,
training and validation rows only) and writes the choice per dataset and
gap kind, with the pooled differences it was made on, to
``fairness_splits_selection_pooled5.json``. It changes no record: split
seeds 0-14 keep the fourth selection's choice, whose test rows they report.
``--apply-pooled fresh5`` writes this choice into the records of a new
round, split seeds 15-17, which checks it on rows no run has used.

Why (2026-12-03, stop 30). The fourth selection chose each setting on the
hold-out numbers of split seeds 0-8. The nested selections of two later
rounds (split seeds 9-11 and 12-14) measured every candidate on their own
hold-out parts, which no choice has used: validation numbers out of the
fourth selection's sample. On them COMPAS DP's choice, "penalty 1", which
had been chosen at a pooled hold-out gap 0.0010 above ThresholdOptimizer's,
came out 0.0053 above (its test gap, over the 45 runs of split seeds 0-14,
0.0102 above: a chosen candidate's own numbers flatter it, and more
validation rows flatter it less). Nothing else changes: the candidates, the
hold-out numbers and the rule are those already stored; only the pool is
larger.

What had been read: the test rows of split seeds 0-14, with the fourth
selection's choices (and before it, the nested ones), and the out-of-sample
hold-out comparison above, made after them. The lotteries' COMPAS DP test
numbers were never run. The choice is committed before the new round's
test rows run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.common import RESULTS_DIR
from benchmarks.fairness_pooled import (
    DATASETS,
    LATER_CHOICES,
    POOLED_ROUNDS,
    RULE,
    choose_kinds,
    record_path,
    write_record,
)

__all__ = ["REPOOLED_FILE", "REPOOLED_ROUNDS", "choose", "run"]

#: The rounds pooled: tag ('' = the first) -> split seeds.
REPOOLED_ROUNDS: dict[str, tuple[int, ...]] = {
    **POOLED_ROUNDS,
    "fresh3": (9, 10, 11),
    "fresh4": (12, 13, 14),
}
REPOOLED_FILE = LATER_CHOICES["fresh5"]
OVER = "0-14"


def choose(splits: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The fourth selection's rule over the split entries of every pooled
    round: per gap kind the chosen candidate, why, and the pooled
    differences."""
    return choose_kinds(splits, OVER)


def run() -> int:
    """The selection of the module docstring (``--select-repooled``)."""
    out: dict[str, Any] = {
        "protocol": __doc__,
        "rule": RULE.replace("0-8", OVER),
        "rounds": {t or "first": list(s) for t, s in REPOOLED_ROUNDS.items()},
        "looked_at_test": False,
        "datasets": {},
    }
    for name in DATASETS:
        splits = []
        for tag, seeds in REPOOLED_ROUNDS.items():
            record = json.loads(record_path(name, tag).read_text(encoding="utf-8"))
            splits += [record["splits"][str(k)] for k in seeds]
        out["datasets"][name] = choose(splits)
        print(f"{name}: {out['datasets'][name]['chosen']}")
    write_record(RESULTS_DIR / REPOOLED_FILE, out)
    return 0
