"""An object-store root naming no bucket (``s3://``) is refused by every command that
reads the storage root, in the words ``regtune sweep`` refuses it with, exit 2:
never read as the local folder ``<cwd>/s3:/...``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtune.errors import SpecError
from regtune.platform.cli import app
from regtune.platform.storage import BAD_STORAGE, STORAGE_ENV, check_storage, storage_root

runner = CliRunner()

BUCKETLESS = ["s3://", "s3:///", "gs://", "gcs://", "s3://?region=us-east-1", "gs://?x=1"]


def _words(option: str, root: str) -> str:
    return BAD_STORAGE.format(option=option, root=root, reason="no bucket named")


@pytest.mark.parametrize("root", BUCKETLESS)
def test_storage_root_refuses_an_object_store_without_a_bucket(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    with pytest.raises(SpecError) as given:
        storage_root(root)
    assert str(given.value) == _words("--storage", root)
    monkeypatch.setenv(STORAGE_ENV, root)
    with pytest.raises(SpecError) as from_env:
        storage_root(None)
    assert str(from_env.value) == _words(STORAGE_ENV, root)
    # check_storage (what sweep runs) says the same.
    with pytest.raises(SpecError) as checked:
        check_storage(None, create=False)
    assert str(checked.value) == str(from_env.value)


@pytest.mark.parametrize(
    "root", ["s3://bucket", "s3://bucket/runs", "gs://b/", "gcs://b/runs?x=1", "hdfs://host/x"]
)
def test_a_uri_with_a_bucket_is_returned_as_given(root: str) -> None:
    assert storage_root(root) == root


@pytest.mark.parametrize(
    "command",
    [
        ["models", "list"],
        ["models", "list", "--json"],
        ["models", "show", "m"],
        ["models", "diff", "m:1", "m:2"],
        ["models", "quantize", "m"],
        ["analyze", "exp"],
        ["promote", "exp", "--name", "m"],
        ["serve", "m", "--write-config", "serve.yaml"],
        ["distill", "m"],
    ],
    ids=lambda c: "-".join(c),
)
@pytest.mark.parametrize("root", ["s3://", "gs://"])
def test_every_command_refuses_a_bucketless_root(
    command: list[str], root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    result = runner.invoke(app, [*command, "--storage", root])
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.strip() == f"error: {_words('--storage', root)}"
    assert result.stdout == ""
    # Nothing was looked for, or made, under the working directory.
    assert list(tmp_path.iterdir()) == []


def test_the_environment_variable_is_named_when_it_is_the_bucketless_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(STORAGE_ENV, "s3://")
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.strip() == f"error: {_words(STORAGE_ENV, 's3://')}"


@pytest.mark.parametrize(
    ("flags", "option", "root"),
    [
        (["--storage", "s3://"], "--storage", "s3://"),
        (["--env", f"{STORAGE_ENV}=gs://"], f"--env {STORAGE_ENV}", "gs://"),
    ],
)
def test_submit_refuses_a_bucketless_root_before_contacting_the_cluster(
    flags: list[str], option: str, root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on port 1: contacting the cluster would fail with another error.
    for variable in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", STORAGE_ENV):
        monkeypatch.delenv(variable, raising=False)
    result = runner.invoke(app, ["submit", "quickstart", "--address", "http://127.0.0.1:1", *flags])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.strip() == f"error: {_words(option, root)}"
