"""Where a sweep's results live, and how a file gets there whole.

An experiment directory is a local path or any URI pyarrow's filesystems
understand (``s3://bucket/runs/name``, ``gs://...``), the same strings Ray
Tune accepts as ``storage_path``. Under it::

    <exp>/results/spec.json                  the SweepSpec, written at sweep start
    <exp>/results/trials.parquet             one row per trial, rewritten whole
    <exp>/results/epochs/part-*.parquet      one row per reported epoch

Writes are atomic: on a local disk a file is written under a hidden
temporary name (``.part-....tmp``, which every reader ignores) and renamed;
on object stores (S3, GCS) an object only becomes visible once its upload
completes, so it is written under its final name directly (a rename there
is a copy). Object stores get no folders made
(:func:`~regtune.platform.storage.is_object_store`).
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from regtune.errors import DataError
from regtune.platform.storage import is_object_store

__all__ = [
    "EPOCHS_DIR",
    "PART_PREFIX",
    "PART_SUFFIX",
    "RESULTS_DIR",
    "SPEC_FILE",
    "TRIALS_FILE",
    "ResultsLocation",
    "as_uri",
    "locate",
]

RESULTS_DIR = "results"
EPOCHS_DIR = "epochs"
TRIALS_FILE = "trials.parquet"
SPEC_FILE = "spec.json"
PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"
#: Names starting with these are in-progress writes or filesystem litter.
HIDDEN_PREFIXES = (".", "_")

BAD_LOCATION = (
    "{exp!r} is not a usable experiment location ({reason}); expected a local path or a "
    "URI such as s3://bucket/runs/name"
)


@dataclass(frozen=True)
class ResultsLocation:
    """The ``results/`` folder of one experiment on its filesystem."""

    fs: pafs.FileSystem
    root: str
    scheme: str

    @property
    def epochs(self) -> str:
        """Folder of the epoch parts."""
        return f"{self.root}/{EPOCHS_DIR}"

    @property
    def trials(self) -> str:
        """The trial table's path."""
        return f"{self.root}/{TRIALS_FILE}"

    @property
    def spec(self) -> str:
        """The spec's path."""
        return f"{self.root}/{SPEC_FILE}"

    @property
    def is_local(self) -> bool:
        """Whether renames are atomic here (a local disk)."""
        return isinstance(self.fs, pafs.LocalFileSystem)

    def display(self, path: str) -> str:
        """``path`` as a user would write it (with its URI scheme)."""
        return f"{self.scheme}://{path}" if self.scheme else path

    def exists(self, path: str) -> bool:
        """Whether a file or folder is at ``path``."""
        return bool(self.fs.get_file_info(path).type != pafs.FileType.NotFound)

    def list_files(self, folder: str) -> list[str]:
        """Names of the visible files directly in ``folder``, sorted; [] if none."""
        infos = self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        names = [
            info.base_name
            for info in infos
            if info.type == pafs.FileType.File and not info.base_name.startswith(HIDDEN_PREFIXES)
        ]
        return sorted(names)

    def read_bytes(self, path: str) -> bytes:
        """The whole file."""
        with self.fs.open_input_stream(path) as f:
            return bytes(f.readall())

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically (see the module docstring)."""
        folder, name = path.rsplit("/", 1)
        if not is_object_store(self.fs):
            self.fs.create_dir(folder, recursive=True)
        if not self.is_local:
            with self.fs.open_output_stream(path) as f:
                f.write(data)
            return
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, path)
        finally:
            if self.exists(tmp):
                self.fs.delete_file(tmp)

    def write_table(self, path: str, table: pa.Table) -> None:
        """Write ``table`` as Parquet to ``path`` atomically."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self.write_bytes(path, buffer.getvalue())

    def delete(self, path: str) -> None:
        """Remove a file; already gone is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(path)


def locate(exp: str) -> ResultsLocation:
    """The results folder of experiment ``exp`` (a local path or a URI).

    Raises:
        DataError: the URI's scheme is unknown or its filesystem cannot be
            set up (the message names ``exp``).
    """
    exp = os.fspath(exp)
    if "://" not in exp:
        root = Path(exp).expanduser().resolve() / RESULTS_DIR
        return ResultsLocation(fs=pafs.LocalFileSystem(), root=root.as_posix(), scheme="")
    scheme = exp.split("://", 1)[0]
    try:
        fs, path = pafs.FileSystem.from_uri(exp)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise DataError(BAD_LOCATION.format(exp=exp, reason=exc)) from exc
    if isinstance(fs, pafs.LocalFileSystem):
        scheme = "file"
    return ResultsLocation(fs=fs, root=f"{path.rstrip('/')}/{RESULTS_DIR}", scheme=scheme)


def as_uri(exp: str, path: str) -> str:
    """A path Ray reports on ``exp``'s filesystem, with ``exp``'s URI scheme
    put back (Ray gives S3 checkpoint paths as ``bucket/key``)."""
    if "://" in exp and "://" not in path:
        return f"{exp.split('://', 1)[0]}://{path.lstrip('/')}"
    return path
