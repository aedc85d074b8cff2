"""A pass-through pyarrow filesystem that counts what would be requests on S3 (tests only)."""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs

__all__ = ["CountingFs"]


class CountingFs(pafs.FileSystemHandler):
    """A pyarrow filesystem that passes every call to ``inner`` and records
    the look-ups (``get_file_info`` of paths) and folder creations: each a
    request on S3."""

    def __init__(self, inner: pafs.FileSystem) -> None:
        self.inner = inner
        self.lookups: list[str] = []
        self.created_dirs: list[str] = []

    def get_type_name(self) -> str:
        return f"counting+{self.inner.type_name}"

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        self.lookups.extend(paths)
        return list(self.inner.get_file_info(paths))

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return list(self.inner.get_file_info(selector))

    def create_dir(self, path: str, recursive: bool) -> None:
        self.created_dirs.append(path)
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.inner.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        self.inner.delete_dir_contents("/", accept_root_dir=True)

    def delete_file(self, path: str) -> None:
        self.inner.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.inner.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.inner.copy_file(src, dest)

    def open_input_stream(self, path: str) -> Any:
        return self.inner.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.inner.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        return self.inner.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        return self.inner.open_append_stream(path, metadata=metadata)

    def normalize_path(self, path: str) -> str:
        return str(self.inner.normalize_path(path))
