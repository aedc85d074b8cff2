"""A YAML spec or ``--set`` value whose aliases expand past the limit is
refused before anything expands it; a spec that reuses a block by alias, as
people write them, loads; a huge bad value is echoed cut."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from regtune.errors import MAX_ECHO, SpecError
from regtune.search_spaces import load_spec
from regtune.search_spaces.yaml_limits import MAX_YAML_VALUES, check_expansion
from regtune.trainables.config import parse_train_config


def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + f"\ndescription: *a{levels}\n"


def test_a_billion_laughs_spec_is_refused_at_once(tmp_path: Path) -> None:
    spec = tmp_path / "bomb.yaml"
    spec.write_text(_bomb(8))  # 10^9 values once expanded
    started = time.process_time()
    with pytest.raises(
        SpecError, match=f"aliases expand to more than {MAX_YAML_VALUES} repeated values"
    ):
        load_spec(str(spec))
    assert time.process_time() - started < 5  # counted on the node tree, never expanded


def test_a_billion_laughs_set_value_is_refused() -> None:
    levels = "&a [1,1,1,1,1,1,1,1,1,1], &b [" + ", ".join(["*a"] * 10) + "], "
    levels += "&c [" + ", ".join(["*b"] * 10) + "], "
    value = "[" + levels + ", ".join(["*c"] * 200) + "]"  # 200 x 1,111 repeated values
    with pytest.raises(SpecError, match="--set description: the YAML's aliases expand"):
        load_spec("quickstart", overrides=[f"description={value}"])


def test_a_spec_reusing_a_block_by_alias_loads(tmp_path: Path) -> None:
    base = load_spec("quickstart").to_dict()
    del base["penalties"]
    spec = tmp_path / "aliases.yaml"
    spec.write_text(
        yaml.safe_dump(base, sort_keys=False)
        + "penalties:\n  l2: &range {loguniform: [1.0e-06, 0.01]}\n  l1: *range\n"
    )
    loaded = load_spec(str(spec)).to_dict()["penalties"]
    assert loaded["l1"] == loaded["l2"] == {"loguniform": [1e-06, 0.01]}


def test_check_expansion_counts_what_each_alias_use_repeats() -> None:
    # [1, 2, 3] is 4 nodes, written once and used 3 times more by alias: 12 repeated.
    node = yaml.compose("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n", Loader=yaml.SafeLoader)
    check_expansion(node, "x", limit=12)
    with pytest.raises(SpecError, match="x: the YAML's aliases expand to more than 11 repeated"):
        check_expansion(node, "x", limit=11)


def test_a_large_spec_without_aliases_is_not_limited() -> None:
    """Only repetition by alias counts: a file listing many columns is fine."""
    text = yaml.safe_dump({"features": [f"c{i}" for i in range(20_000)]})
    # 20,002 nodes against a limit of 10: only a check that counts every node fails.
    check_expansion(yaml.compose(text, Loader=yaml.SafeLoader), "wide.yaml", limit=10)


def test_a_huge_bad_value_is_echoed_cut() -> None:
    with pytest.raises(SpecError) as info:
        parse_train_config({"dataset": "digits", "training": {"lr": "x" * 100_000}})
    text = str(info.value)
    assert "... (100002 characters)" in text and len(text) < MAX_ECHO + 300


def test_a_huge_unknown_name_is_named_once_and_cut_also_in_a_set_override() -> None:
    name = "x" * 500
    with pytest.raises(SpecError) as info:
        parse_train_config({"dataset": name})
    text = str(info.value)
    assert text.count("... (502 characters)") == 1 and len(text) < MAX_ECHO + 300
    assert "unknown dataset; allowed: digits" in text and "(got 'xxx" in text
    # A short one too: named once.
    with pytest.raises(SpecError) as info:
        parse_train_config({"dataset": "adlt"})
    assert str(info.value).count("'adlt'") == 1
    # The --set text a problem is blamed on is cut as well.
    with pytest.raises(SpecError) as info:
        load_spec("quickstart", overrides=[f"dataset={name}"])
    text = str(info.value)
    assert f"--set dataset={'x' * 192}... (508 characters): " in text
    assert len(text) < 2 * MAX_ECHO + 400


@pytest.mark.parametrize(
    "override",
    [
        "scheduler.kind={v}",
        "searcher.kind={v}",
        "objectives=[{{metric: {v}, mode: max}}]",
        "training.early_stopping={{metric: {v}, patience: 2}}",
        "training.{v}=1",
        "{v}=1",
    ],
)
def test_a_huge_name_in_any_door_of_a_spec_is_echoed_cut(override: str) -> None:
    huge = "q" * 3000
    with pytest.raises(SpecError) as info:
        load_spec("quickstart", overrides=[override.format(v=huge)])
    text = str(info.value)
    # Each echo (the --set text, the key path, the value) at most MAX_ECHO long.
    assert text.count(" characters)") >= 2  # the --set text and the name, each cut
    assert all(len(line) < 4 * MAX_ECHO + 400 for line in text.splitlines()), [
        len(line) for line in text.splitlines()
    ]
