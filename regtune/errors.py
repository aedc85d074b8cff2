"""Exceptions raised by regtune, and the one shape of a validation problem.

The tree, in one place::

    RegtuneError                 base of everything regtune raises on purpose
    ├── SpecError (ValueError)   a config / YAML spec / CLI value is invalid
    ├── DataError (ValueError)   a data file, column or value is unusable
    │   └── ChecksumError        a downloaded file has the wrong sha256
    └── CheckpointError          a checkpoint or model file cannot be restored

    DataWarning (UserWarning)    a data file loads, but something in it is
                                 probably not what the user meant

Every message names what was wrong (file, column, key path, value) and what
is allowed, so a user can fix the input without reading the source.

A validation error carries its problems as data, not only as text: each
:class:`Problem` is a dotted key path (``penalties.l2``; ``<root>`` for the
whole config) and what is wrong there, and ``str(problem)`` is the one line a
user reads, ``penalties.l2: Input should be greater than or equal to 0 (got
-1.0)``. Code that collects problems from several sources reads
``exc.problems`` instead of splitting the message text.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Self

__all__ = [
    "MAX_ECHO",
    "ROOT",
    "SUGGEST_CUTOFF",
    "CheckpointError",
    "ChecksumError",
    "DataError",
    "DataWarning",
    "Problem",
    "RegtuneError",
    "SpecError",
    "cut_echo",
    "did_you_mean",
    "shown",
]

#: How alike a misspelt name and a known one must be to be suggested (difflib's ratio).
SUGGEST_CUTOFF = 0.6


def did_you_mean(
    word: str, choices: Iterable[str], *, n: int = 1, cutoff: float = SUGGEST_CUTOFF
) -> str:
    """`` (did you mean 'x'?)`` (``'x' or 'y'`` with ``n`` > 1) naming the closest of
    ``choices`` to a misspelt ``word``, else ``""``: one wording for every door."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=cutoff)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


#: The longest echo of a user's text in an error message (a huge one is cut, its length said).
MAX_ECHO = 200


def cut_echo(text: str) -> str:
    """``text`` as an error message echoes it: cut to :data:`MAX_ECHO` characters,
    with its full length said, so a huge value cannot flood the terminal."""
    if len(text) <= MAX_ECHO:
        return text
    return f"{text[:MAX_ECHO]}... ({len(text)} characters)"


def shown(value: object) -> str:
    """``repr(value)`` as an error message echoes it (:func:`cut_echo`)."""
    return cut_echo(repr(value))


#: The key path of a problem that belongs to no single key.
ROOT = "<root>"


@dataclass(frozen=True)
class Problem:
    """One validation problem: the dotted key path it is at and what is wrong.

    ``because``: the dotted key path whose value makes the problem, where that
    is another key (``training.optimizer`` for an idle ``training.momentum``);
    a spec's message then names the ``--set`` option that gave that key its
    value. Empty: the problem is the key's own.
    """

    path: str
    message: str
    because: str = field(default="", compare=False)

    def __str__(self) -> str:
        # A key path holds the user's keys: a huge one is cut like a value.
        return f"{cut_echo(self.path)}: {self.message}"


class RegtuneError(Exception):
    """Base class of all errors raised by regtune on purpose."""


class _ProblemError(RegtuneError, ValueError):
    """An error made of :class:`Problem` s (possibly none: a plain message)."""

    def __init__(self, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        #: The problems the message lists, in order; empty when the message
        #: is a single sentence with no key path of its own.
        self.problems: tuple[Problem, ...] = tuple(problems)

    @classmethod
    def from_problems(cls, header: str, problems: Iterable[Problem]) -> Self:
        """``header`` then one problem a line (``path: message``)."""
        problems = tuple(problems)
        return cls("\n".join([header, *map(str, problems)]), problems)


class SpecError(_ProblemError):
    """A configuration, YAML spec or command-line value is invalid."""


class DataError(_ProblemError):
    """A data file, column or value cannot be used."""


class ChecksumError(DataError):
    """A downloaded file's sha256 differs from the expected one."""


class DataWarning(UserWarning):
    """A data file loads, but something in it is probably not what the user
    meant (an identifier feature, dropped rows, an unstratified split). The
    ``regtune`` command prints it as one ``warning: ...`` line."""


class CheckpointError(RegtuneError):
    """A checkpoint or stored model cannot be restored."""
