"""One naming rule for experiments: new names, the newest of a spec, bad names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regtune.errors import SpecError
from regtune.platform.tune.naming import (
    BAD_EXPERIMENT_NAME,
    FUSED_STATE_FILE,
    TUNER_FILE,
    check_name,
    experiments_of,
    new_experiment_name,
    newest_experiment,
)
from regtune.search_spaces.sections import NAME_PATTERN

# 2026-11-30 12:00:00 UTC
NOON = 1796040000.0


def test_a_new_name_is_the_spec_name_the_utc_time_and_a_random_tail() -> None:
    name = new_experiment_name("quickstart", now=NOON)
    assert re.fullmatch(r"quickstart-20261130-120000-[0-9a-f]{4}", name)
    assert re.fullmatch(NAME_PATTERN, name)
    # Two names in the same second differ (65536 tails; 20 draws all distinct
    # unless the generator is broken).
    assert len({new_experiment_name("quickstart", now=NOON) for _ in range(20)}) == 20


def test_experiments_of_a_spec_oldest_first() -> None:
    names = [
        "quickstart-20261130-120000-beef",
        "quickstart",
        "quickstart-20261201-080000-0001",
        "quickstart-x-20261202-080000-0001",  # another spec's
        "quickstart-20261130-115959-ffff",
        "notes",
    ]
    assert experiments_of(names, "quickstart") == [
        "quickstart",
        "quickstart-20261130-115959-ffff",
        "quickstart-20261130-120000-beef",
        "quickstart-20261201-080000-0001",
    ]


def test_newest_experiment_needs_a_tune_experiment_folder(tmp_path: Path) -> None:
    assert newest_experiment(str(tmp_path / "missing"), "l2-path") is None
    for name in ("l2-path-20261130-120000-aaaa", "l2-path-20261130-130000-bbbb"):
        (tmp_path / name).mkdir()
        (tmp_path / name / TUNER_FILE).write_bytes(b"")
    # Newer by its name, but not an experiment (no tuner.pkl): skipped.
    (tmp_path / "l2-path-20261130-140000-cccc").mkdir()
    assert newest_experiment(str(tmp_path), "l2-path") == "l2-path-20261130-130000-bbbb"
    assert newest_experiment(str(tmp_path), "dropout-l2") is None
    # A fused sweep's folder holds the driver's state instead of tuner.pkl.
    (tmp_path / "l2-path-20261130-150000-dddd").mkdir()
    (tmp_path / "l2-path-20261130-150000-dddd" / FUSED_STATE_FILE).write_text("{}")
    assert newest_experiment(str(tmp_path), "l2-path") == "l2-path-20261130-150000-dddd"


@pytest.mark.parametrize("bad", ["Upper", "with space", "semi;colon", "a/b", ""])
def test_bad_names_are_refused_naming_the_option(bad: str) -> None:
    with pytest.raises(SpecError) as info:
        check_name(bad)
    assert str(info.value) == BAD_EXPERIMENT_NAME.format(name=bad)
    assert check_name("ok_name-1") == "ok_name-1"
