"""Ray's token file, made readable by its owner only when regtune starts Ray.

Ray 2.60 turns token authentication on for every cluster ``ray.init``
starts and, when no token exists, writes a new one to ``~/.ray/auth_token``
with the process umask (usually mode 644: readable by every user of the
machine). Before regtune starts a local Ray it creates that file itself, in
the same format (64 hex digits, 256 random bits, as Ray's own generator),
with mode 600 in a ``~/.ray`` it creates with mode 700, so Ray finds a token
and never writes one.

Nothing is created when the token comes from elsewhere (``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH``) or authentication is off (``RAY_AUTH_MODE=disabled``).
A token file that already exists is left as it is (other users may share a
group-readable one on purpose); :func:`ensure_private_token` warns when
others can read it and says how to fix it.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "OTHERS_CAN_READ",
    "TOKEN_DIR_MODE",
    "TOKEN_FILE_MODE",
    "default_token_path",
    "ensure_private_token",
]

#: Mode of a token file regtune writes: read/write for its owner only.
TOKEN_FILE_MODE = 0o600
#: Mode of the ``~/.ray`` folder when regtune creates it.
TOKEN_DIR_MODE = 0o700
#: Ray's token length in bytes (64 hex digits), as ``ray get-auth-token --generate``.
TOKEN_BYTES = 32

OTHERS_CAN_READ = (
    "Ray's token file {path} can be read by other users (mode {mode:o}); anyone who "
    "reads it can run code on your Ray clusters. Run `chmod 600 {path}` to fix it"
)

logger = logging.getLogger(__name__)


def default_token_path(environ: Mapping[str, str] | None = None) -> Path:
    """``~/.ray/auth_token``: where Ray looks when no variable names a token."""
    environ = os.environ if environ is None else environ
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".ray" / "auth_token"


def ensure_private_token(environ: Mapping[str, str] | None = None) -> Path | None:
    """Create Ray's default token file (mode 600) if Ray would create it.

    Returns the file created, or ``None`` when nothing was created: the token
    comes from ``RAY_AUTH_TOKEN``/``RAY_AUTH_TOKEN_PATH``, authentication is
    disabled, or the file exists (then a warning is logged if group or other
    users can read it).
    """
    environ = os.environ if environ is None else environ
    if environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    if environ.get("RAY_AUTH_TOKEN") or environ.get("RAY_AUTH_TOKEN_PATH"):
        return None
    path = default_token_path(environ)
    if not path.parent.exists():
        path.parent.mkdir(mode=TOKEN_DIR_MODE, parents=True, exist_ok=True)
    try:
        # O_EXCL: a token written meanwhile by another process is never replaced.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, TOKEN_FILE_MODE)
    except FileExistsError:
        _warn_if_readable_by_others(path)
        return None
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(TOKEN_BYTES))
    # The umask may have cleared bits of 600, never added any; set it exactly.
    os.chmod(path, TOKEN_FILE_MODE)
    return path


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        logger.warning(OTHERS_CAN_READ.format(path=path, mode=mode))
