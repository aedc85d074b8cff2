"""Greedy member selection on running sums: the same choice as scoring every subset in full."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
import torch

from regtune.errors import SpecError
from regtune.platform.registry.ensemble import GREEDY_METRICS, greedy_forward, greedy_select
from regtune.trainables import metrics

_KEY = {"val_loss": "loss", "val_acc": "acc"}
_MODE = {"val_acc": "max"}


def _full_scores(
    probs: Sequence[torch.Tensor], y: torch.Tensor, s: torch.Tensor
) -> dict[str, dict[frozenset[int], float]]:
    """The scores before running sums, of every subset: stack it, score_logits on the
    log of the mean; metric -> subset -> score."""
    out: dict[str, dict[frozenset[int], float]] = {m: {} for m in GREEDY_METRICS}
    for k in range(1, len(probs) + 1):
        for subset in itertools.combinations(range(len(probs)), k):
            mean = torch.stack([probs[i] for i in subset]).mean(dim=0)
            scores = metrics.score_logits(mean.clamp_min(1e-300).log(), y, s)
            for metric, table in out.items():
                table[frozenset(subset)] = scores[_KEY.get(metric, metric)]
    return out


def _brute_greedy(table: dict[frozenset[int], float], n: int, mode: str) -> list[int]:
    """Greedy forward written out over a table of every subset's score."""
    sign = 1.0 if mode == "min" else -1.0
    chosen = [min(range(n), key=lambda i: (sign * table[frozenset([i])], i))]
    while len(chosen) < n:
        rest = [j for j in range(n) if j not in chosen]
        j = min(rest, key=lambda j: (sign * table[frozenset([*chosen, j])], j))
        if not sign * table[frozenset([*chosen, j])] < sign * table[frozenset(chosen)]:
            break
        chosen.append(j)
    return chosen


def _two_class(p1: list[float]) -> torch.Tensor:
    p = torch.tensor(p1, dtype=torch.float64)
    return torch.stack([1 - p, p], dim=1)


def test_a_hand_made_case_keeps_the_two_complementary_members_and_drops_the_flat_one() -> None:
    # member 0 misses row 1, member 1 misses row 0 (a little worse), member 2 says 0.6 everywhere
    y = torch.tensor([1, 1, 0, 0])
    s = torch.tensor([0, 1, 0, 1])
    probs = [
        _two_class([0.9, 0.2, 0.1, 0.2]),
        _two_class([0.15, 0.9, 0.2, 0.1]),
        _two_class([0.6, 0.6, 0.6, 0.6]),
    ]
    for metric, mode in (("val_loss", "min"), ("val_acc", "max")):
        assert greedy_select(probs, y, s, (metric, mode)) == [0, 1]
        table = _full_scores(probs, y, s)[metric]
        old = greedy_forward(3, lambda c, t=table: t[frozenset(c)], mode)
        assert old == [0, 1]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_selection_equals_a_brute_force_greedy_over_every_subset(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    rows, n = 200, 5
    y = torch.randint(0, 2, (rows,), generator=gen)
    s = torch.randint(0, 2, (rows,), generator=gen)
    truth = torch.nn.functional.one_hot(y, 2).double()
    probs = [
        torch.softmax(truth * 0.4 + torch.randn(rows, 2, generator=gen, dtype=torch.float64), 1)
        for _ in range(n)
    ]
    tables = _full_scores(probs, y, s)
    for metric in GREEDY_METRICS:
        mode = _MODE.get(metric, "min")
        expected = _brute_greedy(tables[metric], n, mode)
        assert greedy_select(probs, y, s, (metric, mode)) == expected, metric


def test_a_fairness_gap_without_sensitive_groups_is_refused_by_name() -> None:
    probs = [_two_class([0.9, 0.2]), _two_class([0.1, 0.8])]
    y = torch.tensor([1, 0])
    with pytest.raises(SpecError, match="dp_diff needs two classes and a sensitive column"):
        greedy_select(probs, y, None, ("dp_diff", "min"))
    with pytest.raises(SpecError, match="cannot score 'gap': use one of val_loss"):
        greedy_select(probs, y, None, ("gap", "min"))
