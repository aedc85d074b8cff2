"""regtune: find, serve and watch well-regularized models on Ray.

The package has four parts, each a subpackage:

- :mod:`regtune.trainables` — pure PyTorch training of one configuration
  (data, models, regularizers, attacks, fairness penalties, metrics).
- :mod:`regtune.search_spaces` — YAML search-space presets and their schema.
- :mod:`regtune.platform` — sweeps on Ray Tune, results, analysis, CLI.
- :mod:`regtune.serve` — Ray Serve applications.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from regtune.platform.registry.public import load

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    # ``regtune.load`` is imported on first use: ``import regtune`` stays free of torch.
    if name == "load":
        from regtune.platform.registry.public import load

        return load
    raise AttributeError(f"module 'regtune' has no attribute {name!r}")
