"""A YAML spec, training config or ``--set`` value nested past the limit (a line
of a few thousand ``[``, or aliases nesting inside aliases) is one error line
naming it and the limit, never a RecursionError traceback; nesting up to the
limit loads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from regtune.errors import SpecError
from regtune.platform.cli.serve import _overrides as serve_overrides
from regtune.search_spaces import load_spec, load_train_config
from regtune.search_spaces.overrides import parse_override
from regtune.search_spaces.yaml_limits import (
    MAX_YAML_DEPTH,
    check_depth,
    check_nesting,
    compose,
)

TOO_DEEP = f"lists and mappings nest more than {MAX_YAML_DEPTH} levels deep"


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("load", [load_spec, load_train_config])
def test_a_deeply_nested_file_is_one_error_naming_its_line(load, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "d.yaml"
    spec.write_text(f"name: q\nx: {_nested(2000)}\n")
    with pytest.raises(SpecError) as info:
        load(str(spec))
    assert str(info.value) == (
        f"{spec}:2: {TOO_DEEP}; a spec or --set value may nest at most {MAX_YAML_DEPTH} levels"
    )


def test_deep_block_style_nesting_is_refused_too(tmp_path: Path) -> None:
    # The document's mapping (line 1) is level 1; k{L-2}'s mapping, level L, is on line L + 1.
    spec = tmp_path / "block.yaml"
    spec.write_text("name: q\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(1500)))
    with pytest.raises(SpecError, match=f"block.yaml:{MAX_YAML_DEPTH + 2}: {TOO_DEEP}"):
        load_spec(str(spec))


def test_a_huge_nesting_is_refused_at_once(tmp_path: Path) -> None:
    """PyYAML scans deep flow nesting in quadratic time (100,000 brackets: ten
    minutes): the check stops at the first level past the limit."""
    spec = tmp_path / "huge.yaml"
    spec.write_text(f"name: q\nx: {_nested(100_000)}\n")
    started = time.process_time()
    with pytest.raises(SpecError, match=TOO_DEEP):
        load_spec(str(spec))
    assert time.process_time() - started < 5


def test_a_deeply_nested_set_value_names_the_option() -> None:
    with pytest.raises(SpecError) as info:
        load_spec("quickstart", overrides=[f"penalties.l2={_nested(600)}"])
    assert str(info.value).startswith(f"--set penalties.l2: {TOO_DEEP}; ")
    with pytest.raises(SpecError, match=f"--set training.lr: {TOO_DEEP}"):
        load_train_config("quickstart", overrides=[f"training.lr={_nested(3000)}"])


def test_serve_set_values_go_through_the_same_limit() -> None:
    """``regtune serve --set`` reads its values with parse_override."""
    with pytest.raises(SpecError, match=f"--set max_p99_ms: {TOO_DEEP}"):
        serve_overrides([f"max_p99_ms={_nested(3000)}"])


def test_aliases_nesting_inside_aliases_are_counted(tmp_path: Path) -> None:
    """Each anchor nests 90 levels and the one before it: 30 of them nest 2,700
    levels deep once expanded, with no line deeper than 91 as written."""
    lines = ["name: q", "chain:", f"  - &a0 {'[' * 90}1{']' * 90}"]
    lines += [f"  - &a{i} {'[' * 90}*a{i - 1}{']' * 90}" for i in range(1, 30)]
    spec = tmp_path / "chain.yaml"
    spec.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError) as info:
        load_spec(str(spec))
    assert f"chain.yaml:3: {TOO_DEEP} (counting the values its aliases stand for)" in str(
        info.value
    )


def test_nesting_up_to_the_limit_is_allowed() -> None:
    check_nesting(f"x: {_nested(MAX_YAML_DEPTH - 1)}", "ok")  # the document's mapping is 1
    with pytest.raises(SpecError, match=f"^deep:1: {TOO_DEEP}"):
        check_nesting(f"x: {_nested(MAX_YAML_DEPTH)}", "deep")
    assert parse_override(f"description={_nested(MAX_YAML_DEPTH)}")[1] is not None
    with pytest.raises(SpecError, match=f"^--set description: {TOO_DEEP}"):
        parse_override(f"description={_nested(MAX_YAML_DEPTH + 1)}")


def test_check_depth_counts_what_an_alias_stands_for() -> None:
    # b nests a (2 levels) one level down: 1 (document) + 1 (b) + 2 = 4 levels.
    node = yaml.compose("a: &a [[1]]\nb: [*a]\n", Loader=yaml.SafeLoader)
    check_depth(node, "x", limit=4)
    with pytest.raises(SpecError, match=r"^x:1: lists and mappings nest more than 3 levels"):
        check_depth(node, "x", limit=3)
    with pytest.raises(SpecError, match=r"^x: lists and mappings nest more than 3 levels"):
        check_depth(node, "x", limit=3, lines=False)
    assert compose("", "empty") is None


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "cycle.yaml"
    spec.write_text("name: q\nx: &a [*a]\n")
    with pytest.raises(SpecError, match=r"cycle.yaml: the YAML's aliases expand"):
        load_spec(str(spec))
    # check_depth alone (without check_expansion first) stops on it as well.
    node = yaml.compose("x: &a [*a]\n", Loader=yaml.SafeLoader)
    with pytest.raises(SpecError, match="nest more than 100 levels deep"):
        check_depth(node, "x")
