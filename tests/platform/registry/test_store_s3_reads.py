"""``Place.read``'s limit and ``Place.size`` on an object store (moto's S3 server), and
``verify_files`` refusing a grown object with its real size, reading one byte past
the recorded one."""

from __future__ import annotations

import uuid

import pytest

from regtune.errors import CheckpointError
from regtune.platform.registry.integrity import file_entry, verify_files
from regtune.platform.registry.store import place_of
from tests.conftest import BUCKET

pytestmark = pytest.mark.usefixtures("s3_env")


def test_a_limit_caps_an_object_read() -> None:
    place = place_of(f"s3://{BUCKET}/reads-{uuid.uuid4().hex[:8]}")
    place.write("f", b"0123456789")
    assert place.read("f", limit=4) == b"0123"
    assert place.read("f", limit=100) == place.read("f") == b"0123456789"
    assert place.read("absent", limit=4) is None
    assert (place.size("f"), place.size("absent")) == (10, None)


def test_a_grown_object_is_refused_with_its_size() -> None:
    place = place_of(f"s3://{BUCKET}/grown-{uuid.uuid4().hex[:8]}")
    meta = {"files": {"w.bin": file_entry(b"abc")}}
    place.write("w.bin", b"abc")
    assert verify_files(meta, place) == {"w.bin": b"abc"}
    place.write("w.bin", b"abc" * 1000)
    with pytest.raises(CheckpointError) as refused:
        verify_files(meta, place)
    assert str(refused.value) == (
        f"model version {place.display()}: file w.bin is truncated or resized (3000 bytes, "
        "expected 3); the version is damaged, register it again"
    )
