"""Problems found in a sweep spec: collected while checking, reported at once.

Each problem names the dotted key path it is at (``<root>`` for none) and what
is wrong; :func:`format_problems` writes them one a line under a header,
pointing at the YAML line of the key path where there is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from regtune.errors import ROOT, Problem, cut_echo
from regtune.search_spaces.distributions import KeyPath

__all__ = [
    "Problem",
    "ProblemLog",
    "describe",
    "dotted",
    "format_problems",
    "in_line_order",
]

# Longest value repr shown in a message.
MAX_SHOWN = 80

INVALID_SPEC = "invalid sweep spec {origin}:"
#: Where a problem under a ``--set`` key is blamed: on the option, not the file.
FROM_OVERRIDE = "--set {text}: "
#: Said after a problem made by the value a ``--set`` gave another key.
CAUSED_BY_OVERRIDE = " ({key} is set by --set {text})"


class ProblemLog:
    """The problems of one spec, in the order found, each once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: KeyPath | str, message: str, *, because: str = "") -> None:
        """Record ``message`` at ``path`` (a key path, or already dotted);
        ``because``: the dotted key path whose value makes it (:class:`Problem`)."""
        where = path if isinstance(path, str) else dotted(path)
        problem = Problem(where or ROOT, message, because)
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


def _blame(
    problem: Problem, lines: Mapping[str, int], texts: Mapping[str, str]
) -> tuple[str | None, int | None]:
    """(the ``--set`` text a problem is blamed on, else None; its YAML line, else None)."""
    override = next(
        (t for k, t in texts.items() if problem.path == k or problem.path.startswith(f"{k}.")),
        None,
    )
    if override is None and problem.path not in lines:
        # A problem above a --set key the file does not have (a misspelt section in
        # `--set trainig.lr=0.1`): the --set made it.
        override = next((t for k, t in texts.items() if k.startswith(f"{problem.path}.")), None)
    if override is not None:
        return override, None
    parts = problem.path.split(".")
    while parts:
        line = lines.get(".".join(parts))
        if line is not None:
            return None, line
        parts.pop()
    return None, None


def _cause(problem: Problem, texts: Mapping[str, str]) -> str | None:
    """The ``--set`` text that gave ``problem.because`` its value, else None."""
    if not problem.because:
        return None
    return next(
        (
            t
            for k, t in texts.items()
            if problem.because == k or problem.because.startswith(f"{k}.")
        ),
        None,
    )


def _override_texts(overridden: Iterable[str]) -> dict[str, str]:
    return {text.partition("=")[0].strip(): text for text in overridden}


def in_line_order(
    problems: list[Problem], lines: Mapping[str, int], overridden: Iterable[str]
) -> list[Problem]:
    """``problems`` in the order a reader meets them: those with a line of the
    file by line (stable: the order found within a line), then the rest
    (``--set`` options, keys the file does not hold) in the order found.
    Arguments as :func:`format_problems`."""
    texts = _override_texts(overridden)
    lined = [(_blame(p, lines, texts)[1], i) for i, p in enumerate(problems)]
    order = sorted(range(len(problems)), key=lambda i: (lined[i][0] is None, lined[i][0] or 0, i))
    return [problems[i] for i in order]


def format_problems(
    problems: list[Problem], origin: str, lines: Mapping[str, int], overridden: Iterable[str]
) -> str:
    """The message of a :class:`~regtune.errors.SpecError`: a header naming
    ``origin``, then one problem a line, in the order given (see
    :func:`in_line_order`).

    Args:
        problems: what was found.
        origin: where the spec came from (a file name).
        lines: dotted key path -> YAML line; a problem takes the line of its
            key path, or of the nearest enclosing one.
        overridden: the ``--set KEY=VALUE`` texts applied; a problem at or
            under one of their keys is blamed on that option (the file no
            longer holds the value), not on a line of the file. A problem made
            by another key's value (:attr:`Problem.because`) also names the
            ``--set`` that gave that key its value.
    """
    texts = _override_texts(overridden)
    out = [INVALID_SPEC.format(origin=origin)]
    for problem in problems:
        override, line = _blame(problem, lines, texts)
        if override is not None:
            prefix = FROM_OVERRIDE.format(text=cut_echo(override))
        else:
            prefix = f"line {line}: " if line is not None else ""
        cause = _cause(problem, texts)
        suffix = ""
        if cause is not None and cause != override:
            suffix = CAUSED_BY_OVERRIDE.format(key=problem.because, text=cut_echo(cause))
        out.append(f"{prefix}{problem}{suffix}")
    return "\n".join(out)
