"""The console script prints a DataWarning as one ``warning: ...`` line."""

from __future__ import annotations

import warnings

import pytest

from regtune.errors import DataWarning
from regtune.platform.cli.app import show_data_warnings


def test_a_data_warning_is_one_plain_line_and_others_keep_pythons_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    passed_on: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *args, **kwargs: passed_on.append(str(message))
        show_data_warnings()
        warnings.warn(
            "column 'id' has a different value in each of its 120 rows", DataWarning, stacklevel=1
        )
        warnings.warn("something else", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert "warning: column 'id' has a different value in each of its 120 rows\n" in err
    assert "DataWarning" not in err
    assert passed_on == ["something else"]
