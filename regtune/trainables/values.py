"""Canonical values: the one string a category, group or class value is compared by.

Categories and sensitive groups are one string each, the same
at fit time (vocabulary, group list) and when a record is encoded or its group
looked up (here, in the server and in ``regtune.load().predict()``), because a
Parquet float column, JSON and a CSV spell one value differently:

* a float with an integral value is its integer (``1.0`` and ``1`` are ``"1"``,
  ``8001.0`` is ``"8001"``), other floats their ``repr`` (``"0.5"``);
* a bool is ``"True"`` / ``"False"`` (JSON ``true`` / ``false``);
* a timestamp or date is its ISO form: ``"2020-01-01"`` at midnight without a
  time zone, else ``"2020-01-01T10:30:00"`` (``+01:00`` when it has a zone);
* a string is Unicode NFC-normalised with leading and trailing whitespace
  removed (``"Male "`` is ``"Male"``; inner spaces are kept);
* None and NaN are missing, never a category.

When every known value of a feature (or every group) is of one kind, a string
from a client that spells such a value another way is read as that kind:
``"true"`` / ``"FALSE"`` and ``1`` / ``0`` (number or string) are True / False
for a True/False column; ``"8001"`` or ``"8001.0"`` is the number for a
column whose values are all numbers; ``"2020-01-01 00:00:00"`` is the date for
a column whose values are all ISO dates/timestamps. A value that matches no
known value after this is unseen.

Schemas stored before this rule (``"version": 1``) hold ``str(value)`` texts
(``"1.0"``, ``"2020-01-01 00:00:00"``) in their vocabularies; they are kept as
stored and looked up by their canonical form (:func:`legacy_canonical`), the old
text still being accepted. Group texts (``sensitive_values``) are the names the
data loader gives groups, which post-processing files use too: canonical values
(``"0"`` / ``"1"`` for a float 0/1 column, ``"Male"`` for ``" Male"``) in schemas
fitted now, ``str(value)`` (``"0.0"`` / ``"1.0"``) in schemas stored before the
loader named groups canonically, whatever their ``version``. Both are kept as
stored and read by :func:`legacy_canonical`, which reads a canonical name as
itself and an old ``str(value)`` text as its canonical form (the old text still
being accepted). A text group spelled like such a text is read the same way
(``"1.0"`` from a string column is the group ``"1"``). Two stored entries with one canonical form
(``"1"`` and ``"1.0"``) make the schema ambiguous and are refused on fit and load.

This module imports numpy and pandas, not torch, so a check that only
compares stored names (``regtune serve --write-config`` comparing a canary's
classes with the primary's) can use the same rules as the server.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["EXACT_INT", "canonical_value", "legacy_canonical", "respelling", "same_names"]

#: Integral floats up to this magnitude print as integers (all exactly representable).
EXACT_INT = 2**53

_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.\d*(e[-+]?\d+)?|\d+e[-+]?\d+|inf)")
_STR_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2})?")
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?")
_TRUE, _FALSE = "True", "False"
_BOOL_SPELLINGS = {"true": _TRUE, "1": _TRUE, "false": _FALSE, "0": _FALSE}


def _text(value: str) -> str:
    out = value.strip()
    return out if out.isascii() else unicodedata.normalize("NFC", out)


def _timestamp(value: pd.Timestamp) -> str | None:
    if value is pd.NaT:
        return None
    if value.tz is None and value == value.normalize():
        return value.date().isoformat()
    return value.isoformat()


def canonical_value(value: Any) -> str | None:
    """The one string a category or group value is compared by (None: missing).

    See the module docstring: integral floats as integers, other floats by
    ``repr``, bools ``"True"``/``"False"``, timestamps and dates in ISO form,
    strings NFC without leading/trailing whitespace; None, NaN and NaT are missing.
    """
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, (bool, np.bool_)):
        return _TRUE if value else _FALSE
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return None
        if number.is_integer() and abs(number) <= EXACT_INT:
            return str(int(number))
        return repr(number)
    if isinstance(value, (dt.datetime, np.datetime64)):
        return _timestamp(pd.Timestamp(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    return _text(str(value))


def legacy_canonical(text: str) -> str:
    """The canonical form of a ``str(value)`` text written before canonical values.

    ``"1.0"`` (a float's ``str``) is ``"1"``, ``"2020-01-01 00:00:00"`` (a
    pandas timestamp's) is ``"2020-01-01"``; other texts as :func:`canonical_value`.
    """
    if _FLOAT_TEXT.fullmatch(text):
        return canonical_value(float(text)) or text
    if _STR_TIMESTAMP.fullmatch(text):
        return _timestamp(pd.Timestamp(text)) or text
    return _text(text)


def _as_bool(value: Any, canonical: str) -> str | None:
    return _BOOL_SPELLINGS.get(canonical.lower())


def _as_number(value: Any, canonical: str) -> str | None:
    if not isinstance(value, str) or not _FLOAT_TEXT.fullmatch(canonical.lower()):
        return None
    return canonical_value(float(canonical))


def _as_time(value: Any, canonical: str) -> str | None:
    if not isinstance(value, str) or not _ISO_TIME.fullmatch(canonical):
        return None
    try:
        return _timestamp(pd.Timestamp(canonical))
    except ValueError:
        return None


def _is_number_name(name: str) -> bool:
    # Canonical numbers only: "08001" is a code, not the number 8001.
    if not (_FLOAT_TEXT.fullmatch(name) or name.lstrip("+-").isdigit()):
        return False
    return canonical_value(float(name)) == name


def respelling(names: Sequence[str]) -> Callable[[Any, str], str | None] | None:
    """How a missed value may be re-read, given the kind every known value has."""
    if not names:
        return None
    if set(names) <= {_TRUE, _FALSE}:
        return _as_bool
    if all(_is_number_name(n) for n in names):
        return _as_number
    if all(_ISO_TIME.fullmatch(n) for n in names):
        return _as_time
    return None


def same_names(theirs: Sequence[str], ours: Sequence[str]) -> bool:
    """Whether two stored name lists name the same values in the same order:
    equal text, or equal canonical forms (a version stored before names were
    canonical says "1.0" where a newer one says "1"). The order matters, not
    only the set: class ids are read by position."""
    return len(theirs) == len(ours) and all(
        a == b or legacy_canonical(a) == legacy_canonical(b)
        for a, b in zip(theirs, ours, strict=True)
    )
