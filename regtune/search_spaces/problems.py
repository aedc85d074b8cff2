"""Problems found in a sweep spec: collected while checking, reported at once.

Each problem names the dotted key path it is at (``<root>`` for none) and what
is wrong; :func:`format_problems` writes them one a line under a header,
pointing at the YAML line of the key path where there is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from regtune.errors import ROOT, Problem
from regtune.search_spaces.distributions import KeyPath

__all__ = [
    "Problem",
    "ProblemLog",
    "describe",
    "dotted",
    "format_problems",
]

# Longest value repr shown in a message.
MAX_SHOWN = 80

INVALID_SPEC = "invalid sweep spec {origin}:"
#: Where a problem under a ``--set`` key is blamed: on the option, not the file.
FROM_OVERRIDE = "--set {text}: "


class ProblemLog:
    """The problems of one spec, in the order found, each once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: KeyPath | str, message: str) -> None:
        """Record ``message`` at ``path`` (a key path, or already dotted)."""
        where = path if isinstance(path, str) else dotted(path)
        problem = Problem(where or ROOT, message)
        if problem not in self.problems:
            self.problems.append(problem)


def dotted(path: Iterable[str]) -> str:
    """``("penalties", "l2")`` -> ``"penalties.l2"``."""
    return ".".join(path)


def describe(value: Any) -> str:
    """A value for a message: its type and its repr, cut to :data:`MAX_SHOWN`."""
    shown = repr(value)
    if len(shown) > MAX_SHOWN:
        shown = shown[: MAX_SHOWN - 3] + "..."
    return f"{type(value).__name__} {shown}"


def format_problems(
    problems: list[Problem], origin: str, lines: Mapping[str, int], overridden: Iterable[str]
) -> str:
    """The message of a :class:`~regtune.errors.SpecError`: a header naming
    ``origin``, then one problem a line.

    Args:
        problems: what was found.
        origin: where the spec came from (a file name).
        lines: dotted key path -> YAML line; a problem takes the line of its
            key path, or of the nearest enclosing one.
        overridden: the ``--set KEY=VALUE`` texts applied; a problem at or
            under one of their keys is blamed on that option (the file no
            longer holds the value), not on a line of the file.
    """
    texts = {text.partition("=")[0].strip(): text for text in overridden}
    out = [INVALID_SPEC.format(origin=origin)]
    for problem in problems:
        override = next(
            (t for k, t in texts.items() if problem.path == k or problem.path.startswith(f"{k}.")),
            None,
        )
        line = None
        if override is None:
            parts = problem.path.split(".")
            while parts and line is None:
                line = lines.get(".".join(parts))
                parts.pop()
        if override is not None:
            prefix = FROM_OVERRIDE.format(text=override)
        else:
            prefix = f"line {line}: " if line is not None else ""
        out.append(f"{prefix}{problem}")
    return "\n".join(out)
