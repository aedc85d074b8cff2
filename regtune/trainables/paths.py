"""Expanding ``~`` and ``~user`` in a path a user gave, with one wording for
a ``~user`` that names no user.

``Path.expanduser`` raises a bare ``RuntimeError("Could not determine home
directory.")`` there; :func:`expand_user` raises :class:`NoHomeError`, whose
message (:data:`NO_HOME`) names the part that cannot be expanded, for each
caller to put in its own words (the dataset path, the dataset cache, the
storage root). Imports nothing heavy: the spec validator and the storage
root use it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["NO_HOME", "NoHomeError", "expand_user"]

#: Why a path starting with ``~user`` that names no user cannot be used.
NO_HOME = "cannot expand {user!r}: no such user's home folder"


class NoHomeError(RuntimeError):
    """A path's ``~user`` names no user (or ``~`` has no home folder).

    A ``RuntimeError``, as pathlib's own, so code that caught that catches
    this. ``str()`` is :data:`NO_HOME`, naming :attr:`user`.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        #: The ``~`` or ``~user`` part that cannot be expanded.
        self.user = Path(path).parts[0] if path else path
        super().__init__(NO_HOME.format(user=self.user))


def expand_user(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded (``Path.expanduser``).

    Raises:
        NoHomeError: the ``~user`` names no user, in :data:`NO_HOME`'s words.
    """
    try:
        return Path(path).expanduser()
    except RuntimeError as exc:  # "Could not determine home directory."
        raise NoHomeError(os.fspath(path)) from exc
