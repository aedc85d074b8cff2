"""Exceptions raised by regtune.

The tree, in one place::

    RegtuneError                 base of everything regtune raises on purpose
    ├── SpecError (ValueError)   a config / YAML spec / CLI value is invalid
    ├── DataError (ValueError)   a data file, column or value is unusable
    │   └── ChecksumError        a downloaded file has the wrong sha256
    └── CheckpointError          a checkpoint or model file cannot be restored

Every message names what was wrong (file, column, key path, value) and what
is allowed, so a user can fix the input without reading the source.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ChecksumError", "DataError", "RegtuneError", "SpecError"]


class RegtuneError(Exception):
    """Base class of all errors raised by regtune on purpose."""


class SpecError(RegtuneError, ValueError):
    """A configuration, YAML spec or command-line value is invalid."""


class DataError(RegtuneError, ValueError):
    """A data file, column or value cannot be used."""


class ChecksumError(DataError):
    """A downloaded file's sha256 differs from the expected one."""


class CheckpointError(RegtuneError):
    """A checkpoint or stored model cannot be restored."""
