"""Problems found in a sweep spec: collected while checking, reported at once.

Each problem names the dotted key path it is at (``<root>`` for none) and what
is wrong; :func:`format_problems` writes them one a line under a header,
pointing at the YAML line of the key path where there is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from regtune.search_spaces.distributions import KeyPath

__all__ = [
    "Problem",
    "ProblemLog",
    "describe",
    "dotted",
    "format_problems",
    "pydantic_errors",
]

# Longest value repr shown in a message.
MAX_SHOWN = 80

INVALID_SPEC = "invalid sweep spec {origin}:"


@dataclass(frozen=True)
class Problem:
    """One problem: the dotted key path it is at and what is wrong there."""

    path: str
    message: str


class ProblemLog:
    """The problems of one spec, in the order found, each once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: KeyPath | str, message: str) -> None:
        """Record ``message`` at ``path`` (a key path, or already dotted)."""
        where = path if isinstance(path, str) else dotted(path)
        problem = Problem(where or "<root>", message)
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


def pydantic_errors(exc: ValidationError) -> list[tuple[KeyPath, str]]:
    """``(key path, message)`` of each pydantic error, naming the bad value."""
    found = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        got = err.get("input")
        shown = "" if isinstance(got, Mapping) else f" (got {got!r})"
        message = err["msg"].removeprefix("Value error, ")
        found.append((loc, f"{message}{shown}"))
    return found


def format_problems(
    problems: list[Problem], origin: str, lines: Mapping[str, int], overridden: list[str]
) -> str:
    """The message of a :class:`~regtune.errors.SpecError`: a header naming
    ``origin``, then one problem a line.

    Args:
        problems: what was found.
        origin: where the spec came from (a file name).
        lines: dotted key path -> YAML line; a problem takes the line of its
            key path, or of the nearest enclosing one.
        overridden: dotted keys set by ``--set``; problems under them get no
            line, since the file no longer holds their value.
    """
    out = [INVALID_SPEC.format(origin=origin)]
    for problem in problems:
        line = None
        if not any(problem.path == k or problem.path.startswith(f"{k}.") for k in overridden):
            parts = problem.path.split(".")
            while parts and line is None:
                line = lines.get(".".join(parts))
                parts.pop()
        prefix = f"line {line}: " if line is not None else ""
        out.append(f"{prefix}{problem.path}: {problem.message}")
    return "\n".join(out)
