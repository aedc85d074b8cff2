"""Analysis of stored results: pure numpy/pandas, no Ray (runs over a copied results directory).

The core takes DataFrames of the results store's shape and returns DataFrames::

    from regtune.platform.analysis import analyze_experiment, analyze_tables
    analysis = analyze_experiment("~/regtune_runs/l2-path")
    analysis.paths["penalties.l2"]    # regularization path: strength x metric, median + spread
    analysis.front.front              # Pareto-optimal trials; .hypervolume, .reference
    analysis.diagnosis                # per trial: overfit / underfit / unstable / biased + numbers
    analysis.verdict                  # where the next sweep should look
    analysis.best.reliability         # best trial: calibration curve (conf, acc, count per bin)
    analysis.best.group_rates         # best trial: per-group acc / positive rate / tpr / fpr + CI

Modules answer one question each: :mod:`.curves` (per-trial segments),
:mod:`.summary` (one row per trial), :mod:`.swept` (what was swept),
:mod:`.path`, :mod:`.front` (with :mod:`.pareto`, the maths), :mod:`.diagnosis`,
:mod:`.verdict`, :mod:`.best`, :mod:`.columns` (which columns are per-group
rates and reliability bins), :mod:`.compare`, :mod:`.load` (the reader
adapter), :mod:`.run` (the whole analysis), :mod:`.figures` and :mod:`.report`.
"""

from __future__ import annotations

from regtune.platform.analysis.best import (
    BestTrial,
    best_trial,
    best_trial_id,
    group_rates,
    reliability_table,
)
from regtune.platform.analysis.columns import (
    detail_columns,
    group_columns,
    group_rate_columns,
    reliability_columns,
)
from regtune.platform.analysis.compare import spec_differences
from regtune.platform.analysis.diagnosis import diagnose, directions, explain
from regtune.platform.analysis.front import Front, pareto_table, resolve_objectives
from regtune.platform.analysis.load import Experiment, load_experiment
from regtune.platform.analysis.path import heatmap, regularization_path
from regtune.platform.analysis.run import Analysis, analyze_experiment, analyze_tables
from regtune.platform.analysis.summary import trial_summary
from regtune.platform.analysis.swept import SweptParameter, swept_parameters
from regtune.platform.analysis.verdict import sweep_verdict

__all__ = [
    "Analysis",
    "BestTrial",
    "Experiment",
    "Front",
    "SweptParameter",
    "analyze_experiment",
    "analyze_tables",
    "best_trial",
    "best_trial_id",
    "detail_columns",
    "diagnose",
    "directions",
    "explain",
    "group_columns",
    "group_rate_columns",
    "group_rates",
    "heatmap",
    "load_experiment",
    "pareto_table",
    "regularization_path",
    "reliability_columns",
    "reliability_table",
    "resolve_objectives",
    "spec_differences",
    "sweep_verdict",
    "swept_parameters",
    "trial_summary",
]
