"""The fifth German/COMPAS selection (benchmarks/fairness_repooled.py): the
fourth's rule over more split seeds' stored hold-out numbers, and the round
that takes its choice."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import fairness_repooled as fr


def _split(cands: dict[str, tuple[float, float]]) -> dict[str, Any]:
    refs = {"fairlearn EG": (0.70, 0.05), "fairlearn TO": (0.69, 0.03)}

    def kind() -> dict[str, Any]:
        return {
            "candidates": {n: {"mean": {"acc": a, "gap": g}} for n, (a, g) in cands.items()},
            "fairlearn_holdout": {n: {"mean": {"acc": a, "gap": g}} for n, (a, g) in refs.items()},
        }

    return {"kinds": {"dp": kind(), "eo": kind()}}


def test_more_split_seeds_can_change_the_choice() -> None:
    """Pooled over the first 9 split seeds "penalty" matches both contenders;
    the 6 later ones, where it does not, tip the pool to "lottery"."""
    early = [_split({"penalty": (0.71, 0.02), "lottery": (0.70, 0.03)})] * 9
    late = [_split({"penalty": (0.70, 0.06), "lottery": (0.705, 0.025)})] * 6
    assert fr.choose(early)["chosen"]["dp"] == "penalty"
    out = fr.choose(early + late)
    assert out["chosen"] == {"dp": "lottery", "eo": "lottery"}
    assert out["why"]["dp"].startswith("pooled over split seeds 0-14: matches 2 of 2")
    diff = out["differences"]["dp"]["penalty"]["fairlearn TO"]
    assert diff["d_gap"] == pytest.approx((9 * -0.01 + 6 * 0.03) / 15)


def test_the_pool_is_split_seeds_0_to_14_and_fresh5_takes_its_choice() -> None:
    from benchmarks.fairness_pooled import LATER_CHOICES
    from benchmarks.fairness_splits import ROUNDS

    seeds = sorted(s for r in fr.REPOOLED_ROUNDS.values() for s in r)
    assert seeds == list(range(15))
    assert LATER_CHOICES["fresh5"] == fr.REPOOLED_FILE
    assert not set(ROUNDS["fresh5"]) & set(seeds)


def test_it_runs_alone(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import fairness_splits

    for extra in (["--smoke-test"], ["--select-pooled"], ["--apply-pooled", "fresh5"]):
        with pytest.raises(SystemExit) as info:
            fairness_splits.main(["--select-repooled", *extra])
        assert info.value.code == 2
        assert "--select-repooled runs alone" in capsys.readouterr().err
