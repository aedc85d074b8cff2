"""One naming rule for experiments: new names, the newest of a spec, bad names."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from regtune.errors import SpecError
from regtune.platform.tune.naming import (
    BAD_EXPERIMENT_NAME,
    FUSED_STATE_FILE,
    MAX_NAME_LENGTH,
    TUNER_FILE,
    check_name,
    experiments_of,
    new_experiment_name,
    newest_experiment,
)
from regtune.platform.tune.sweep import resolve_name
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


@pytest.mark.parametrize("length", [101, 150, 240, MAX_NAME_LENGTH])
def test_any_name_the_filesystem_holds_is_accepted(length: int, tmp_path: Path) -> None:
    # Names of 150 and 240 characters ran sweeps before a 100-character cap
    # refused them (and their resumes); the folder is the limit (255 bytes).
    name = "n" * length
    (tmp_path / name).mkdir()  # the filesystem holds it
    assert check_name(name) == name
    # A resume of the folder that exists is never refused.
    spec = SimpleNamespace(name="spec")
    assert resolve_name(spec, name=name, resume=True, storage=str(tmp_path)) == name  # type: ignore[arg-type]


def test_a_name_the_filesystem_cannot_hold_is_refused_with_the_real_limit(tmp_path: Path) -> None:
    name = "n" * (MAX_NAME_LENGTH + 1)
    with pytest.raises(OSError, match="too long"):
        (tmp_path / name).mkdir()  # errno 36: the limit is real
    with pytest.raises(SpecError) as info:
        check_name(name)
    assert str(info.value) == (
        f"--name '{'n' * 20}...{'n' * 8}': 256 characters; an experiment name may have at "
        "most 255 (it names a folder; a filesystem holds at most 255 bytes in one name)"
    )


def test_bytes_added_around_the_name_are_counted() -> None:
    # E.g. regtune submit's job log: job-driver-regtune-NAME-<time>-<6 hex>.log.
    assert check_name("n" * 209, added=46) == "n" * 209
    with pytest.raises(SpecError, match=r"at most 209 .*; the job log adds 46 to the name\)$"):
        check_name("n" * 210, added=46, where="the job log")
