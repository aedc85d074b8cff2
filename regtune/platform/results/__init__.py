"""A sweep's results on disk: the Parquet store and the outcome read back from it.

Layout under an experiment directory ``<storage>/<name>`` (path or URI)::

    results/spec.json              the SweepSpec the sweep ran
    results/trials.parquet         one row per trial
    results/epochs/part-*.parquet  one row per reported epoch

Reading needs no Ray (pandas and pyarrow only), so the analysis runs on a
copied results folder::

    from regtune.platform.results import read_epochs, read_trials, read_spec
    epochs = read_epochs("~/regtune_runs/l2-path")

Writing happens on the sweep's driver, through the Tune callback in
:mod:`regtune.platform.results.callback` (the one module here that imports
Ray). Columns and guarantees: ``docs/results.md``.
"""

from __future__ import annotations

from regtune.platform.results.degenerate import is_constant_predictor
from regtune.platform.results.outcome import (
    SweepOutcome,
    TrialSummary,
    outcome_from_grid,
    pareto_indices,
)
from regtune.platform.results.read import ResultsWarning, read_epochs, read_spec, read_trials
from regtune.platform.results.schema import SCHEMA_VERSION
from regtune.platform.results.trials import STATUSES
from regtune.platform.results.writer import ResultsWriter

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "ResultsWarning",
    "ResultsWriter",
    "SweepOutcome",
    "TrialSummary",
    "is_constant_predictor",
    "outcome_from_grid",
    "pareto_indices",
    "read_epochs",
    "read_spec",
    "read_trials",
]
