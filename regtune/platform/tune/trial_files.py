"""Which checkpoints of a trial are on disk and complete, and what the trial reported.

A Tune trial directory holds ``checkpoint_NNNNNN/`` folders (``NNNNNN``
counts the trial's checkpoints) with regtune's training state in
``regtune_state/`` (``state.json`` + ``tensors.safetensors``), and
``result.json`` (one JSON line per reported epoch). Tune copies a
checkpoint's files into its folder one by one, so a driver or worker killed
mid-copy leaves a folder that exists but is incomplete: a checkpoint counts
only when both files are there, ``state.json`` parses and names its epoch,
and the safetensors file is as long as its own header says.

Works on any pyarrow filesystem (local, S3, GCS) through Tune's own handle.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from regtune.trainables.checkpoint import TENSORS_FILE, TREE_FILE

__all__ = [
    "CHECKPOINT_DIR",
    "RESULT_FILE",
    "STATE_DIR",
    "CheckpointOnDisk",
    "checkpoint_epoch",
    "list_checkpoints",
    "newest_complete",
    "reported_rows",
    "safetensors_problem",
]

#: Tune's checkpoint folder names: ``checkpoint_000007``.
CHECKPOINT_DIR = re.compile(r"checkpoint_(\d{6,})")
#: Subfolder of a Tune checkpoint holding regtune's training state.
STATE_DIR = "regtune_state"
#: Tune's per-trial JSON log (one reported result per line).
RESULT_FILE = "result.json"

#: Bytes of the little-endian header length that opens a safetensors file.
_SAFETENSORS_LEN = 8


@dataclass(frozen=True)
class CheckpointOnDisk:
    """One ``checkpoint_NNNNNN`` folder: its index, path, and the epoch its
    state file names (``None`` when the checkpoint is incomplete)."""

    index: int
    path: str
    epoch: int | None

    @property
    def complete(self) -> bool:
        """Whether both state files are there and whole."""
        return self.epoch is not None


def _read(fs: pafs.FileSystem, path: str) -> bytes | None:
    try:
        with fs.open_input_stream(path) as handle:
            return bytes(handle.read())
    except (FileNotFoundError, OSError):
        return None


def safetensors_problem(fs: pafs.FileSystem, path: str) -> str | None:
    """Why the safetensors file at ``path`` is damaged (None: it holds every byte its
    header promises). Reads the header only, not the tensors. The reason names the
    file by its base name."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    try:
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File or info.size is None:
            return f"{name} cannot be read (not a file)"
        size = info.size
        with fs.open_input_file(path) as handle:
            head = handle.read(_SAFETENSORS_LEN)
            length = struct.unpack("<Q", head)[0] if len(head) == _SAFETENSORS_LEN else -1
            if length < 0 or length > size - _SAFETENSORS_LEN:
                return f"{name} is truncated ({size} bytes, shorter than its header)"
            header = json.loads(handle.read(length))
    except OSError as exc:
        return f"{name} cannot be read ({exc})"
    except ValueError:
        return f"{name} has no valid header"
    if not isinstance(header, dict):
        return f"{name} has no valid header"
    ends = []
    for key, entry in header.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if key == "__metadata__":
            continue
        if not (isinstance(offsets, list) and len(offsets) == 2 and _is_int(offsets[1])):
            return f"{name} has no valid header (entry {key!r})"
        ends.append(int(offsets[1]))
    expected = _SAFETENSORS_LEN + length + max(ends, default=0)
    if size != expected:
        return f"{name} is truncated or padded ({size} bytes; its header says {expected})"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def checkpoint_epoch(fs: pafs.FileSystem, checkpoint_path: str) -> int | None:
    """The epoch a Tune checkpoint folder holds, or ``None`` when it is incomplete."""
    state = f"{checkpoint_path}/{STATE_DIR}"
    raw = _read(fs, f"{state}/{TREE_FILE}")
    if raw is None:
        return None
    try:
        epoch = json.loads(raw)["tree"]["epoch"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        return None
    if safetensors_problem(fs, f"{state}/{TENSORS_FILE}") is not None:
        return None
    return epoch


def list_checkpoints(fs: pafs.FileSystem, trial_path: str) -> list[CheckpointOnDisk]:
    """Every ``checkpoint_NNNNNN`` folder under ``trial_path``, by index."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    except OSError:
        return []
    found = []
    for info in infos:
        match = CHECKPOINT_DIR.fullmatch(info.base_name)
        if match and info.type == pafs.FileType.Directory:
            found.append(
                CheckpointOnDisk(
                    index=int(match.group(1)), path=info.path, epoch=checkpoint_epoch(fs, info.path)
                )
            )
    return sorted(found, key=lambda c: c.index)


def newest_complete(checkpoints: list[CheckpointOnDisk]) -> CheckpointOnDisk | None:
    """The complete checkpoint with the highest epoch (then index), if any."""
    complete = [c for c in checkpoints if c.epoch is not None]
    return max(complete, key=lambda c: (c.epoch, c.index), default=None)


def reported_rows(fs: pafs.FileSystem, trial_path: str) -> dict[int, dict[str, Any]]:
    """The trial's reported results by ``training_iteration`` (the last row
    wins when an epoch was reported twice); a torn last line is skipped."""
    raw = _read(fs, f"{trial_path}/{RESULT_FILE}")
    rows: dict[int, dict[str, Any]] = {}
    for line in (raw or b"").decode("utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("training_iteration"), int):
            rows[row["training_iteration"]] = row
    return rows
