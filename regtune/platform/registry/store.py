"""Where the registry's bytes live: a local directory or an object store URI, through pyarrow.fs.

:class:`Place` is one folder on one filesystem (the registry root, a model's
folder or a version directory); every read and write of the registry goes
through it, so ``s3://bucket/runs/registry`` works like ``~/regtune_runs/registry``.
Credentials and endpoints come from the filesystem's usual environment
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ... for S3; Google's for ``gs://``).
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from regtune.errors import SpecError
from regtune.platform.storage import is_object_store

__all__ = ["BAD_LOCATION", "NOT_REGULAR", "Place", "place_of"]

#: Why a local device, FIFO or socket in a file's place is not read.
NOT_REGULAR = "path is not a regular file (a device, FIFO or socket)"
BAD_LOCATION = (
    "registry location {where!r} cannot be opened ({reason}); expected a local path or a URI "
    "such as s3://bucket/runs/registry"
)


@dataclass(frozen=True)
class Place:
    """A folder ``path`` on filesystem ``fs``; ``scheme`` is "" for a local path."""

    fs: pafs.FileSystem
    path: str
    scheme: str = ""

    @property
    def is_local(self) -> bool:
        """Whether this is the local disk (where a rename is atomic)."""
        return isinstance(self.fs, pafs.LocalFileSystem)

    def child(self, *names: str) -> Place:
        """The folder ``names`` below this one."""
        return Place(self.fs, "/".join([self.path.rstrip("/"), *names]), self.scheme)

    def file(self, name: str) -> str:
        """Filesystem path of file ``name`` in this folder."""
        return f"{self.path.rstrip('/')}/{name}"

    def display(self, name: str | None = None) -> str:
        """This folder (or its file ``name``) as a user writes it, with the URI scheme."""
        path = self.file(name) if name else self.path
        return f"{self.scheme}://{path}" if self.scheme else path

    def __str__(self) -> str:
        return self.display()

    def kind(self, name: str) -> pafs.FileType:
        """File, Directory or NotFound for ``name`` in this folder."""
        return self.fs.get_file_info(self.file(name)).type

    def is_file(self, name: str) -> bool:
        """Whether file ``name`` exists here."""
        return bool(self.kind(name) == pafs.FileType.File)

    def entries(self) -> list[pafs.FileInfo]:
        """What is directly in this folder ([] when it does not exist)."""
        return list(self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True)))

    def folders(self) -> list[str]:
        """Names of the sub-folders (object stores: common prefixes)."""
        return sorted(i.base_name for i in self.entries() if i.type == pafs.FileType.Directory)

    def files(self) -> list[str]:
        """Names of the files directly here."""
        return sorted(i.base_name for i in self.entries() if i.type == pafs.FileType.File)

    def read(self, name: str, limit: int | None = None) -> bytes | None:
        """File ``name``'s bytes (at most ``limit`` of them), or None when it does not exist.

        A reader that knows how big the file should be passes ``limit`` (say,
        one byte more than that): a file that grew, or a huge one in its
        place, is then never read whole into memory. A local path that is not
        a regular file (a device such as ``/dev/zero``, a FIFO, a socket,
        also behind a symlink) is refused, never read, whatever ``limit``.

        Raises:
            OSError: it cannot be read (a folder or a device in its place, no
                permission, an object store's error); readers name the file in
                their message.
        """
        if self.is_local:
            return _read_local(self.file(name), limit)
        try:
            with self.fs.open_input_stream(self.file(name)) as handle:
                return bytes(handle.readall() if limit is None else handle.read(limit))
        except FileNotFoundError:
            return None

    def size(self, name: str) -> int | None:
        """Size in bytes of file ``name`` (None: absent, or a size the filesystem does not say).

        Raises:
            OSError: the filesystem cannot be asked.
        """
        info = self.fs.get_file_info(self.file(name))
        return None if info.type == pafs.FileType.NotFound else info.size

    def _make(self) -> None:
        """Make this folder, except on an object store, which has none
        (:func:`~regtune.platform.storage.is_object_store`)."""
        if not is_object_store(self.fs):
            self.fs.create_dir(self.path, recursive=True)

    def write(self, name: str, data: bytes) -> None:
        """Write file ``name`` (one PUT on an object store)."""
        self._make()
        with self.fs.open_output_stream(self.file(name)) as handle:
            handle.write(data)

    def copy_in(self, source: Place, name: str) -> None:
        """Copy ``source``'s file ``name`` here (server-side on an object store)."""
        self._make()
        self.fs.copy_file(source.file(name), self.file(name))

    def delete(self, name: str) -> None:
        """Remove file ``name``; already gone is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.file(name))

    def remove(self) -> None:
        """Remove this folder and everything in it; already gone is fine.

        On GCS, arrow deletes the folder's marker object last; with no marker
        (none is made) that raises FileNotFoundError after the files are gone,
        which is why it is suppressed here."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(self.path)


def _read_local(path: str, limit: int | None) -> bytes | None:
    """:meth:`Place.read` of a local file: opened without blocking (a FIFO would
    wait for a writer), checked to be a regular file on the opened descriptor
    (no race with a rename), and read up to ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError("path is a directory")
        if not stat.S_ISREG(mode):
            raise OSError(NOT_REGULAR)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        return handle.read() if limit is None else handle.read(limit)


def place_of(where: str) -> Place:
    """The folder ``where`` names: a local path (made absolute), ``file://`` or another URI.

    Raises:
        SpecError: an unknown URI scheme or a filesystem that cannot be set up
            (the message names ``where``).
    """
    where = os.fspath(where)
    if "://" not in where:
        return Place(pafs.LocalFileSystem(), Path(where).expanduser().resolve().as_posix())
    scheme = where.split("://", 1)[0]
    try:
        fs, path = pafs.FileSystem.from_uri(where)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as exc:
        raise SpecError(BAD_LOCATION.format(where=where, reason=exc)) from exc
    if isinstance(fs, pafs.LocalFileSystem):
        return Place(fs, Path(path).resolve().as_posix())
    return Place(fs, path.rstrip("/"), scheme)
