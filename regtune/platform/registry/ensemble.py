"""Is the ensemble better than its best member? Judged on validation only.

An ensemble (mean of member probabilities) of a good trial and a bad one can
score below the good one alone. :func:`compare_on_validation` scores the
ensemble and each member on the validation split, on the promotion's
objectives, and names a member that does at least as well on every objective
and better on one (for one objective: a member strictly better than the
ensemble). Test numbers are never used, so the choice does not peek at what
the gates will judge.

All are scored on the networks' arg-max outputs without post-processing, the
same way for the ensemble and the members (post-processing is refitted for an
ensemble after the members are chosen).

Only objectives a validation split can score are compared (:data:`VALIDATION_METRICS`);
when an objective is none of these, no comparison is made.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from regtune.errors import SpecError
from regtune.trainables import metrics

if TYPE_CHECKING:
    from torch import Tensor, nn

    from regtune.trainables.data import Dataset

__all__ = [
    "GREEDY_METRICS",
    "VALIDATION_METRICS",
    "ValidationComparison",
    "compare_on_validation",
    "dominating_member",
    "greedy_forward",
    "greedy_members",
    "greedy_select",
    "validation_scores",
]

#: Objectives a trial reports on its validation split (as the trainer names them).
VALIDATION_METRICS = ("val_loss", "val_acc", "gap", "ece", "brier", "dp_diff", "eo_diff")

#: Objectives greedy selection can score on averaged validation probabilities
#: (``gap`` needs the training split too: not offered).
GREEDY_METRICS = ("val_loss", "val_acc", "ece", "brier", "dp_diff", "eo_diff")

BAD_GREEDY_METRIC = "greedy selection cannot score {metric!r}: use one of {allowed}"
NO_FAIRNESS_GAP = (
    "greedy selection on {metric} needs two classes and a sensitive column "
    "(this one has {n_classes} classes, {groups}); use val_loss, val_acc, ece or brier"
)

#: Rows per forward pass (memory bound, not a tuning knob).
_BATCH = 4096


def validation_scores(
    module: nn.Module, dataset: Dataset, names: Sequence[str]
) -> dict[str, float]:
    """``module``'s validation metrics ``names`` (of :data:`VALIDATION_METRICS`), named
    as a trial reports them; ``gap`` is validation loss minus the training split's
    loss in eval mode (the trainer's is the mean loss of its training batches, with
    dropout on), so it compares the ensemble with its members, not with the sweep."""
    z = metrics.logits(module, dataset.val.x, batch_size=_BATCH)
    val = metrics.score_logits(z, dataset.val.y, dataset.val.s)
    row: dict[str, float] = {
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "ece": val["ece"],
        "brier": val["brier"],
        **{k: val[k] for k in ("dp_diff", "eo_diff") if k in val},
    }
    if "gap" in names:
        zt = metrics.logits(module, dataset.train.x, batch_size=_BATCH)
        row["gap"] = val["loss"] - metrics.score_logits(zt, dataset.train.y)["loss"]
    return {n: float(row[n]) for n in names if n in row}


def _at_least_as_good(a: float, b: float, mode: str) -> bool:
    return a >= b if mode == "max" else a <= b


def dominating_member(
    ensemble: Mapping[str, float],
    members: Sequence[Mapping[str, float]],
    objectives: Sequence[tuple[str, str]],
) -> int | None:
    """Index of the member that beats the ensemble: at least as good on every
    objective and strictly better on one (for one objective, the best such member;
    for several, the first in ``members`` order). None when no member does, or a
    value is missing or not finite."""
    names = [m for m, _ in objectives]
    rows = [ensemble, *members]
    if not all(isinstance(r.get(n), float) and math.isfinite(r[n]) for r in rows for n in names):
        return None
    winners = [
        i
        for i, row in enumerate(members)
        if all(_at_least_as_good(row[m], ensemble[m], mode) for m, mode in objectives)
        and any(row[m] != ensemble[m] for m, _ in objectives)
    ]
    if not winners:
        return None
    if len(objectives) == 1:
        metric, mode = objectives[0]
        sign = -1.0 if mode == "max" else 1.0
        return min(winners, key=lambda i: (sign * members[i][metric], i))
    return winners[0]


@dataclass(frozen=True)
class ValidationComparison:
    """The ensemble's and each member's validation scores on the objectives."""

    objectives: list[tuple[str, str]]
    ensemble: dict[str, float]
    members: dict[str, dict[str, float]]
    #: trial id of a member that beats the ensemble (see :func:`dominating_member`)
    better_member: str | None

    def warning(self) -> str | None:
        """The sentence a promotion records when a member beats the ensemble, else None."""
        if self.better_member is None:
            return None
        own = self.members[self.better_member]

        def show(row: Mapping[str, float]) -> str:
            return ", ".join(f"{m} {row[m]:.4f}" for m, _ in self.objectives)

        return (
            f"the ensemble is worse on validation than its member {self.better_member} alone "
            f"(ensemble: {show(self.ensemble)}; {self.better_member}: {show(own)}); "
            "pass --top-k 1 to register the best trial alone"
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (for ``promote --json``)."""
        return {
            "objectives": [list(o) for o in self.objectives],
            "ensemble": self.ensemble,
            "members": self.members,
            "better_member": self.better_member,
        }


def compare_on_validation(
    ensemble: nn.Module,
    members: Mapping[str, nn.Module],
    dataset: Dataset,
    objectives: Sequence[tuple[str, str]],
) -> ValidationComparison | None:
    """Score ``ensemble`` and each of ``members`` (trial id -> network) on validation.

    None when an objective is not a validation metric (nothing comparable) or
    there is a single member (the ensemble is that member).
    """
    names = [m for m, _ in objectives]
    if len(members) < 2 or not names or any(n not in VALIDATION_METRICS for n in names):
        return None
    ens = validation_scores(ensemble, dataset, names)
    scores = {tid: validation_scores(net, dataset, names) for tid, net in members.items()}
    ids = list(scores)
    index = dominating_member(ens, [scores[t] for t in ids], list(objectives))
    return ValidationComparison(
        objectives=list(objectives),
        ensemble=ens,
        members=scores,
        better_member=None if index is None else ids[index],
    )


def greedy_forward(n: int, score: Callable[[Sequence[int]], float], mode: str) -> list[int]:
    """Greedy forward selection (Caruana et al. 2004, without replacement): start
    from the best single member, then add, one at a time, the member whose
    addition improves ``score`` (of the mean of the chosen members) the most;
    stop when no addition improves it strictly. Returns the chosen indexes in
    the order added. Ties go to the lower index."""
    better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
    singles = [score([i]) for i in range(n)]
    first = 0
    for i in range(1, n):
        if better(singles[i], singles[first]):
            first = i
    chosen, best = [first], singles[first]
    while len(chosen) < n:
        trials = [(score([*chosen, j]), j) for j in range(n) if j not in chosen]
        value, j = trials[0]
        for v, k in trials[1:]:
            if better(v, value):
                value, j = v, k
        if not better(value, best):
            break
        chosen.append(j)
        best = value
    return chosen


def greedy_members(
    members: Sequence[nn.Module], dataset: Dataset, objective: tuple[str, str]
) -> list[int]:
    """The members :func:`greedy_forward` keeps, scored on the validation split's
    mean probabilities on ``objective`` (one of :data:`GREEDY_METRICS`)."""
    val = dataset.val
    probs = [metrics.logits(m, val.x, batch_size=_BATCH).double().softmax(dim=1) for m in members]
    return greedy_select(probs, val.y, val.s, objective)


def greedy_select(
    probs: Sequence[Tensor], y: Tensor, s: Tensor | None, objective: tuple[str, str]
) -> list[int]:
    """:func:`greedy_forward` on members given as their (rows, classes) probabilities
    on the validation split (labels ``y``, sensitive groups ``s``), scored on
    ``objective`` (one of :data:`GREEDY_METRICS`) of the members' mean.

    The sum of the chosen members' probabilities is kept between calls, so
    scoring one candidate costs O(rows x classes) whatever the ensemble size,
    and only ``objective`` is computed (n members: about n^2/2 such scores, not
    n^2/2 stacks of the chosen members with every metric).

    Raises:
        SpecError: ``objective`` is not one of :data:`GREEDY_METRICS`, or is a
            fairness gap without two classes and sensitive groups.
    """
    metric, mode = objective
    measure = _probability_metric(metric, y, s, probs[0].shape[1] if probs else 0)
    prefix: list[int] = []
    total = torch.zeros_like(probs[0]) if probs else torch.zeros(0)

    def score(chosen: Sequence[int]) -> float:
        nonlocal total
        *head, candidate = chosen
        if head != prefix:
            if head[: len(prefix)] == prefix:
                for i in head[len(prefix) :]:
                    total = total + probs[i]
            else:
                total = sum((probs[i] for i in head), torch.zeros_like(probs[0]))
            prefix[:] = head
        return measure((total + probs[candidate]) / len(chosen))

    return greedy_forward(len(probs), score, mode)


def _probability_metric(
    metric: str, y: Tensor, s: Tensor | None, n_classes: int
) -> Callable[[Tensor], float]:
    """``metric`` of mean probabilities (rows, classes), as :func:`metrics.score_logits`
    computes it on their logs (whose softmax is those probabilities)."""
    if metric not in GREEDY_METRICS:
        raise SpecError(BAD_GREEDY_METRIC.format(metric=metric, allowed=", ".join(GREEDY_METRICS)))
    if metric == "val_loss":
        picked = y.long().unsqueeze(1)
        # cross-entropy of the logits log(p): -log p[y] (the rows sum to 1)
        return lambda p: float(-p.gather(1, picked).clamp_min(1e-300).log().mean())
    if metric == "val_acc":
        return lambda p: metrics.accuracy(p, y)
    if metric == "ece":
        return lambda p: metrics.expected_calibration_error(p, y)
    if metric == "brier":
        return lambda p: metrics.brier_score(p, y)
    if s is None or n_classes != 2:
        groups_text = "no sensitive column" if s is None else "a sensitive column"
        raise SpecError(
            NO_FAIRNESS_GAP.format(metric=metric, n_classes=n_classes, groups=groups_text)
        )
    groups = s
    if metric == "dp_diff":
        return lambda p: metrics.dp_difference(p.argmax(dim=1), groups)
    return lambda p: metrics.eo_difference(y, p.argmax(dim=1), groups)
