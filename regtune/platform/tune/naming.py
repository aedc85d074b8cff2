"""One naming rule for a sweep's experiment, wherever the sweep runs.

``regtune sweep`` (local or inside ``ray job submit``), ``regtune submit``
and :func:`~regtune.platform.tune.sweep.run_sweep` all use it:

- no ``--name``: a new experiment ``<spec name>-<UTC YYYYmmdd-HHMMSS>-<4 hex>``
  (the random tail keeps two submissions in the same second apart);
- ``--name NAME``: exactly ``NAME`` (refused if it already exists);
- ``--resume --name NAME``: continue ``NAME``;
- ``--resume`` alone: continue the newest experiment of that spec under the
  storage root (newest by the time in its name), or one named exactly like
  the spec (experiments from before this rule).

Names hold lowercase letters, digits, ``_`` and ``-`` only (so a character
is a byte), at most :data:`MAX_NAME_LENGTH`: the experiment's folder is named
by it, and a filesystem holds at most 255 bytes in one path component (errno
36, ``File name too long``, past that). Where a name goes into a longer
component (``regtune submit``'s submission id, which Ray puts in its log
file's name), :func:`check_name` counts those bytes too. Any folder that
exists already fits, so ``regtune sweep --resume`` of it is never refused for
its length (``regtune submit --resume`` still refuses a name over 209
characters: the job's log file could not be named).
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import pyarrow.fs as pafs

from regtune.errors import SpecError
from regtune.search_spaces.sections import BAD_NAME, NAME_PATTERN

__all__ = [
    "BAD_EXPERIMENT_NAME",
    "FUSED_STATE_FILE",
    "LONG_EXPERIMENT_NAME",
    "MAX_NAME_LENGTH",
    "STAMP_FORMAT",
    "TUNER_FILE",
    "check_name",
    "experiments_of",
    "new_experiment_name",
    "newest_experiment",
    "trial_dir_name",
]

#: UTC time in a generated name.
STAMP_FORMAT = "%Y%m%d-%H%M%S"
#: The file Tune writes when an experiment starts (what makes a folder an experiment).
TUNER_FILE = "tuner.pkl"
#: The file a fused sweep's driver writes instead (``fused_driver.STATE_FILE``).
FUSED_STATE_FILE = "regtune-fused-state.json"
BAD_EXPERIMENT_NAME = "--name {name!r}: " + BAD_NAME
#: Longest path component a filesystem holds (bytes; ext4, xfs, btrfs, APFS, NTFS).
MAX_NAME_LENGTH = 255
LONG_EXPERIMENT_NAME = (
    "--name {name!r}: {n} characters; an experiment name may have at most {max} "
    "(it names a folder; a filesystem holds at most {limit} bytes in one name{added})"
)
_TAIL = r"(\d{8}-\d{6})-[0-9a-f]{4}"


def check_name(name: str, *, added: int = 0, where: str = "") -> str:
    """``name`` if it is a valid experiment name.

    Args:
        added: bytes put around the name in the longest path component made
            of it (e.g. a submission id's prefix and generated suffix, and
            the log file's own around that); 0 where the name is the
            component (the experiment's folder).
        where: what that component is, for the message (with ``added``).

    Raises:
        SpecError: it holds other characters than lowercase letters, digits,
            ``_`` and ``-``, or more than :data:`MAX_NAME_LENGTH` - ``added``
            of them (a folder or file named by it could not be made).
    """
    if not re.fullmatch(NAME_PATTERN, name):
        raise SpecError(BAD_EXPERIMENT_NAME.format(name=name))
    most = MAX_NAME_LENGTH - added
    if len(name.encode()) > most:
        shown = f"{name[:20]}...{name[-8:]}"
        extra = f"; {where} adds {added} to the name" if added else ""
        raise SpecError(
            LONG_EXPERIMENT_NAME.format(
                name=shown, n=len(name), max=most, limit=MAX_NAME_LENGTH, added=extra
            )
        )
    return name


def new_experiment_name(spec_name: str, *, now: float | None = None) -> str:
    """``<spec_name>-<UTC YYYYmmdd-HHMMSS>-<4 random hex>`` for a new experiment."""
    stamp = time.strftime(STAMP_FORMAT, time.gmtime(time.time() if now is None else now))
    return f"{spec_name}-{stamp}-{secrets.token_hex(2)}"


def experiments_of(names: list[str], spec_name: str) -> list[str]:
    """The names among ``names`` that this rule gives the spec's experiments,
    oldest first (by the time in the name; a bare ``spec_name`` is oldest)."""
    pattern = re.compile(re.escape(spec_name) + "-" + _TAIL)
    dated = sorted(
        ((m.group(1), name) for name in names if (m := pattern.fullmatch(name))),
    )
    bare = [spec_name] if spec_name in names else []
    return bare + [name for _, name in dated]


def newest_experiment(root: str, spec_name: str) -> str | None:
    """The newest experiment of ``spec_name`` under the storage ``root``
    (a path or URI), or None when there is none."""
    fs, base = pafs.FileSystem.from_uri(root)
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    except OSError:
        return None
    folders = [i.base_name for i in infos if i.type == pafs.FileType.Directory]
    for name in reversed(experiments_of(folders, spec_name)):
        for marker in (TUNER_FILE, FUSED_STATE_FILE):
            path = f"{base.rstrip('/')}/{name}/{marker}"
            if fs.get_file_info(path).type == pafs.FileType.File:
                return name
    return None


def trial_dir_name(trial: Any) -> str:
    """A trial's folder (and display) name: ``trial_<id>``."""
    return f"trial_{trial.trial_id}"
