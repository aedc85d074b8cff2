"""Unknown model and version messages stay one short line on a large registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from regtune.errors import SpecError, did_you_mean
from regtune.platform.registry.location import describe_models, describe_versions, resolve_ref


def _publish(root: Path, name: str, versions: list[int]) -> None:
    for v in versions:
        folder = root / name / f"v{v}"
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text("{}")


def test_a_missing_version_of_300_names_the_range_not_every_number(tmp_path: Path) -> None:
    _publish(tmp_path, "big", list(range(1, 301)))
    with pytest.raises(SpecError) as caught:
        resolve_ref("big:301", root=str(tmp_path))
    message = str(caught.value)
    assert message.endswith(
        "has no version 301 under " + str(tmp_path) + "; versions: 1-300, latest 300"
    )
    assert len(message) < 150 + len(str(tmp_path))


def test_gaps_are_summarised_as_ranges(tmp_path: Path) -> None:
    kept = [v for v in range(1, 301) if not 121 <= v <= 124]
    _publish(tmp_path, "gappy", kept)
    with pytest.raises(SpecError, match=r"versions: 1-120, 125-300 \(296 in all\), latest 300$"):
        resolve_ref("gappy:122", root=str(tmp_path))
    # a version kept only every other number: ranges capped, the rest counted
    odd = list(range(1, 60, 2))
    assert (
        describe_versions(odd)
        == "1, 3, 5, 7, 9, 11, 13, 15, 17, 19 and 20 more ranges (30 in all), latest 59"
    )


def test_a_short_list_is_shown_whole() -> None:
    assert describe_versions([1, 2, 5]) == "[1, 2, 5]"
    assert describe_models(["a", "b"]) == "['a', 'b']"
    assert describe_models([]) == "none"


def test_an_unknown_model_among_many_lists_ten_and_suggests_the_closest(tmp_path: Path) -> None:
    names = [f"model-{i:03d}" for i in range(40)] + ["churn-risk"]
    for name in names:
        _publish(tmp_path, name, [1])
    with pytest.raises(SpecError) as caught:
        resolve_ref("churn-rsik", root=str(tmp_path))
    message = str(caught.value)
    first_ten = str(sorted(names)[:10])
    assert message.endswith(
        f"registered models: {first_ten} and 31 more (regtune models list)"
        " (did you mean 'churn-risk'?)"
    )
    assert "model-039" not in message


def test_an_empty_registry_says_none(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"registered models: none$"):
        resolve_ref("ghost", root=str(tmp_path))


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [("adultt", "adult1"), ("adultz", "adult1"), ("adultstv", "adultstu"), ("digen", "digens")],
)
def test_the_suggestion_is_the_name_fewest_edits_away(
    tmp_path: Path, typed: str, suggested: str
) -> None:
    """difflib's ratio alone offered 'adultstu' for 'adultt' (more shared letters),
    though 'adult1' is one edit away."""
    for name in ("adult1", "adultens", "adultstu", "digens"):
        _publish(tmp_path, name, [1])
    with pytest.raises(SpecError) as caught:
        resolve_ref(typed, root=str(tmp_path))
    assert str(caught.value).endswith(f"(did you mean {suggested!r}?)")


def test_the_suggestion_is_worded_as_every_other_door_words_it(tmp_path: Path) -> None:
    """The registry ranks its own suggestion but keeps did_you_mean's wording."""
    _publish(tmp_path, "churn-risk", [1])
    with pytest.raises(SpecError) as caught:
        resolve_ref("churn-rsik", root=str(tmp_path))
    hint = did_you_mean("churn-rsik", ["churn-risk"])
    assert hint and str(caught.value).endswith(hint)


def test_no_suggestion_for_a_name_like_none(tmp_path: Path) -> None:
    _publish(tmp_path, "adult1", [1])
    with pytest.raises(SpecError) as caught:
        resolve_ref("zzzzzz", root=str(tmp_path))
    assert "did you mean" not in str(caught.value)
