"""Tune's Ctrl+C warnings (``ray/tune/tune.py``: "Stop signal received ..." as the
signal arrives, "Experiment has been interrupted ... Tuner.restore(...)" at the
end) are hidden unless ``--verbose``: ``regtune sweep`` prints its own
``--resume`` line instead."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from regtune.platform.tune import banners

STOP = (
    "Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run. This will try to "
    "checkpoint the experiment state one last time. Press CTRL+C (or send "
    "SIGINT/SIGKILL/SIGTERM) to skip. "
)
ENDED = (
    "Experiment has been interrupted, but the most recent state was saved.\n"
    'Resume experiment with: Tuner.restore(path="/tmp/x", trainable=...)'
)
OTHER = "Experiment state snapshotting failed:"


@pytest.fixture
def verbosity() -> Iterator[None]:
    was = banners.is_verbose()
    yield
    banners.set_verbose(was)


def _passed(message: str) -> bool:
    logger = logging.getLogger(banners.TUNE_RUN_LOGGER)
    record = logger.makeRecord(logger.name, logging.WARNING, "tune.py", 1, message, (), None)
    return all(f.filter(record) for f in logger.filters)


def test_tunes_interrupt_warnings_are_hidden_unless_verbose(verbosity: None) -> None:
    banners.set_verbose(False)
    assert not _passed(STOP)
    assert not _passed(ENDED)
    assert not _passed("Trials did not complete: [trial_1]")
    assert _passed(OTHER)
    banners.set_verbose(True)
    assert _passed(STOP) and _passed(ENDED)
