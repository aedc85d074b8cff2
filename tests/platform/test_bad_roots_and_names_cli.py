"""A bad cache folder, storage root or experiment name, given through the real
command line, is one plain error line naming the value and why; no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtune.errors import DataError, SpecError
from regtune.platform.cli import app
from regtune.platform.storage import STORAGE_ENV, storage_root
from regtune.platform.tune.naming import MAX_NAME_LENGTH, check_name
from regtune.trainables.fetch import CACHE_ENV, fetch_dataset

runner = CliRunner()


def _error_line(args: list[str], env: dict[str, str] | None = None) -> str:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    output = result.output
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if line.strip()]
    return line


def test_a_cache_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "passwd"
    blocker.write_text("x", encoding="utf-8")
    line = _error_line(["data", "fetch", "digits"], env={CACHE_ENV: str(blocker)})
    assert line == (
        f"error: ${CACHE_ENV} '{blocker}': not usable as the dataset cache (it is a file, "
        f"not a folder); point ${CACHE_ENV} at a writable folder (default ~/.cache/regtune)"
    )
    # A folder under a file names the file.
    line = _error_line(["data", "fetch", "digits"], env={CACHE_ENV: str(blocker / "sub")})
    assert f"({blocker} is a file, not a folder)" in line
    # An unknown ~user names the part that cannot be expanded.
    line = _error_line(["data", "fetch", "digits"], env={CACHE_ENV: "~nosuchuser-rt/c"})
    assert "'~nosuchuser-rt/c': not usable as the dataset cache (cannot expand" in line
    # Loading a built-in (train, sweep trials) says the same.
    with pytest.raises(DataError, match="is a file, not a folder"):
        fetch_dataset("digits", cache_dir=blocker)


def test_a_storage_root_with_an_unknown_user_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    line = _error_line(["sweep", "quickstart", "--storage", "~nosuchuser-rt/x"])
    assert line == (
        "error: --storage '~nosuchuser-rt/x': not usable as the storage root (cannot expand "
        "'~nosuchuser-rt': no such user's home folder); expected a folder (writable, for a "
        "command that writes there) or an s3:// / gs:// URI naming a bucket"
    )
    monkeypatch.setenv(STORAGE_ENV, "~nosuchuser-rt/x")
    with pytest.raises(SpecError, match=f"^{STORAGE_ENV} '~nosuchuser-rt/x': not usable"):
        storage_root()


def test_an_over_long_experiment_name_is_refused(tmp_path: Path) -> None:
    name = "a" * 300
    line = _error_line(["sweep", "quickstart", "--name", name, "--storage", str(tmp_path)])
    assert line == (
        f"error: --name '{'a' * 20}...{'a' * 8}': 300 characters; an experiment name may have "
        f"at most {MAX_NAME_LENGTH} (it names a folder; a filesystem holds at most 255 bytes "
        "in one name)"
    )
    assert list(tmp_path.iterdir()) == []  # nothing made for it
    # The longest generated name (a 64-character spec name) is allowed.
    longest = "s" * 64 + "-20261130-120000-abcd"
    assert check_name(longest) == longest
    assert check_name("n" * MAX_NAME_LENGTH) == "n" * MAX_NAME_LENGTH
    with pytest.raises(SpecError, match="256 characters"):
        check_name("n" * (MAX_NAME_LENGTH + 1))
