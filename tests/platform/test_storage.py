"""The storage root: where it comes from, and a root nothing can be written to refused by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regtune.errors import SpecError
from regtune.platform.storage import (
    BAD_STORAGE,
    EMPTY_ROOT,
    STORAGE_ENV,
    check_storage,
    storage_root,
)
from regtune.trainables.paths import NO_HOME


def _refused(storage: str | None) -> str:
    with pytest.raises(SpecError) as info:
        check_storage(storage)
    return str(info.value)


def test_a_usable_root_is_returned_absolute_and_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert check_storage("runs/a") == str(tmp_path / "runs" / "a")
    assert (tmp_path / "runs" / "a").is_dir()
    assert check_storage(f"file://{tmp_path}/uri/b") == f"file://{tmp_path}/uri/b"
    assert (tmp_path / "uri" / "b").is_dir()
    # A bucket is not contacted (gs:// needs no region look-up): the first
    # file written finds its permissions.
    assert check_storage("gs://bucket/runs") == "gs://bucket/runs"
    monkeypatch.setenv(STORAGE_ENV, str(tmp_path / "from-env"))
    assert check_storage(None) == str(tmp_path / "from-env")
    assert (tmp_path / "from-env").is_dir()


@pytest.mark.parametrize(
    ("storage", "reason"),
    [
        ("afile", "it is a file, not a folder"),
        ("afile/runs", "{tmp}/afile is a file, not a folder"),
        ("file://{tmp}/afile", "it is a file, not a folder"),
        ("foo://bar/x", "Unrecognized filesystem type in URI: foo://bar/x"),
        ("s3:///x", "Missing bucket name in S3 URI"),
        ("gs:///x", "Missing bucket name in GCS URI"),
        ("s3://", "no bucket named"),
    ],
    ids=[
        "a-file",
        "under-a-file",
        "file-uri-to-a-file",
        "unknown-scheme",
        "s3-no-bucket",
        "gs-no-bucket",
        "s3-nothing",
    ],
)
def test_an_unusable_root_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str, reason: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    storage = storage.format(tmp=tmp_path)
    expected = BAD_STORAGE.format(
        option="--storage", root=storage, reason=reason.format(tmp=tmp_path)
    )
    assert _refused(storage) == expected
    # Nothing was made beside the file, and the file is as it was.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_the_message_names_the_environment_variable_when_the_root_came_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv(STORAGE_ENV, str(afile))
    reason = "it is a file, not a folder"
    assert _refused(None) == BAD_STORAGE.format(option=STORAGE_ENV, root=str(afile), reason=reason)
    # --storage wins over the variable, and is named when it is the bad one.
    assert check_storage(str(tmp_path / "ok")) == str(tmp_path / "ok")
    monkeypatch.setenv(STORAGE_ENV, str(tmp_path / "ok"))
    assert _refused(str(afile)) == BAD_STORAGE.format(
        option="--storage", root=str(afile), reason=reason
    )


def test_a_look_up_makes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resume's look-up only reads: a typo'd root is not made, and a file in the
    way is still refused by name."""
    monkeypatch.chdir(tmp_path)
    assert check_storage("typo/runs", create=False) == str(tmp_path / "typo" / "runs")
    assert not (tmp_path / "typo").exists()
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(SpecError, match="afile is a file, not a folder"):
        check_storage("afile/runs", create=False)
    with pytest.raises(SpecError, match="it is a file, not a folder"):
        check_storage("afile", create=False)


def test_a_root_under_an_unknown_user_is_refused_in_the_one_wording(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ``~user`` wording is regtune.trainables.paths' NO_HOME, as for a data path."""
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    reason = NO_HOME.format(user="~nosuchuser-rt")
    assert reason == "cannot expand '~nosuchuser-rt': no such user's home folder"
    expected = BAD_STORAGE.format(option="--storage", root="~nosuchuser-rt/x", reason=reason)
    with pytest.raises(SpecError, match=f"^{re.escape(expected)}$"):
        storage_root("~nosuchuser-rt/x")
    assert _refused("~nosuchuser-rt/x") == expected


def test_an_empty_root_is_refused_not_read_as_the_default_or_the_current_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``--storage ""`` (an unset shell variable) meant the default root, and an
    empty $REGTUNE_STORAGE the current folder: neither was asked for."""
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    expected = BAD_STORAGE.format(option="--storage", root="", reason=EMPTY_ROOT)
    with pytest.raises(SpecError, match=f"^{re.escape(expected)}$"):
        storage_root("")
    monkeypatch.setenv(STORAGE_ENV, " ")
    monkeypatch.chdir(tmp_path)
    expected = BAD_STORAGE.format(option=STORAGE_ENV, root=" ", reason=EMPTY_ROOT)
    with pytest.raises(SpecError, match=f"^{re.escape(expected)}$"):
        storage_root()
    # Given, --storage wins over the empty variable, as any value does.
    assert storage_root(str(tmp_path / "runs")) == str(tmp_path / "runs")
