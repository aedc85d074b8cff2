"""regtune: find, serve and watch well-regularized models on Ray.

The package has four parts, each a subpackage:

- :mod:`regtune.trainables` — pure PyTorch training of one configuration
  (data, models, regularizers, attacks, fairness penalties, metrics).
- :mod:`regtune.search_spaces` — YAML search-space presets and their schema.
- :mod:`regtune.platform` — sweeps on Ray Tune, results, analysis, CLI.
- :mod:`regtune.serve` — Ray Serve applications.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
