"""``Place.read``: a limit caps what is read, and a device, FIFO or folder in a file's
place is refused unread (before, ``/dev/zero`` was read until memory ran out and a
FIFO blocked forever)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from regtune.platform.registry.store import NOT_REGULAR, place_of
from tests.platform.registry.within import within


def test_a_limit_caps_the_bytes_read(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    place = place_of(str(tmp_path))
    assert place.read("f") == b"0123456789"
    assert place.read("f", limit=4) == b"0123"
    assert place.read("f", limit=100) == b"0123456789"
    assert place.read("absent", limit=4) is None
    assert place.size("f") == 10
    assert place.size("absent") is None


def test_a_sparse_huge_file_is_read_only_to_the_limit(tmp_path: Path) -> None:
    with open(tmp_path / "big", "wb") as handle:
        handle.truncate(8 * 1024**3)  # sparse: no disk used
    place = place_of(str(tmp_path))
    assert place.read("big", limit=5) == b"\0" * 5
    assert place.size("big") == 8 * 1024**3


def _in_thread(call: Callable[[], Any], timeout: float = 10.0) -> Any:
    """``call()``, failing the test (not hanging it) when it does not return in ``timeout``."""
    return within(call, timeout, "the read did not return")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_behind_a_symlink_is_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "zero").symlink_to("/dev/zero")
    place = place_of(str(tmp_path))
    for limit in (None, 10):
        with pytest.raises(OSError, match="not a regular file"):
            _in_thread(lambda limit=limit: place.read("zero", limit=limit))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    place = place_of(str(tmp_path))
    with pytest.raises(OSError) as refused:
        _in_thread(lambda: place.read("fifo"))
    assert str(refused.value) == NOT_REGULAR


def test_a_folder_in_place_of_a_file_is_an_os_error(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError, match="is a directory"):
        place_of(str(tmp_path)).read("d")
