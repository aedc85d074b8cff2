"""Compatibility only: the two names :mod:`regtune.platform.jobs` imports from here.

The sweep spec schema is split into :mod:`~regtune.search_spaces.sections`,
:mod:`~regtune.search_spaces.spec`, :mod:`~regtune.search_spaces.validate` and
:mod:`~regtune.search_spaces.load`; import from those. This module goes once
jobs imports ``BAD_NAME`` and ``NAME_PATTERN`` from ``sections``.
"""

from __future__ import annotations

from regtune.search_spaces.sections import BAD_NAME, NAME_PATTERN

__all__ = ["BAD_NAME", "NAME_PATTERN"]
