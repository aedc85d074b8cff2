"""Temperature scaling after training: one temperature, or one per group.

Dividing the logits by a positive temperature ``T`` changes the probabilities
but never the arg-max, and within a group never the order of the scores, so
it changes no arg-max decision and no per-group-threshold decision (once
thresholds are fitted on the scaled scores): a fairness constraint that holds
before holds after. :func:`fit_temperatures` picks each ``T`` from a fixed
log-spaced grid by the validation negative log-likelihood (deterministic,
vectorised over the grid).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from regtune.errors import DataError

__all__ = ["TEMPERATURE_GRID", "fit_temperatures", "scale_logits"]

#: Candidate temperatures: 400 log-spaced values in [0.05, 20] (steps of ~1.5%).
TEMPERATURE_GRID = torch.logspace(math.log10(0.05), math.log10(20.0), 400, dtype=torch.float64)

BAD_INPUTS = "fit_temperatures needs logits (n, classes) and labels of one equal, non-zero length"


def scale_logits(logits: Tensor, temperatures: Tensor, s: Tensor | None = None) -> Tensor:
    """``logits / T`` (one temperature) or ``logits / T[s]`` (one per group)."""
    t = temperatures.to(device=logits.device, dtype=logits.dtype)
    if t.numel() == 1:
        return logits / t.reshape(())
    if s is None:
        raise DataError("per-group temperatures need group codes")
    return logits / t[s.to(logits.device)][:, None]


def fit_temperatures(
    logits: Tensor, y: Tensor, s: Tensor | None = None, n_groups: int = 1
) -> Tensor:
    """The NLL-minimising temperature of :data:`TEMPERATURE_GRID`, per group
    when ``s`` is given (shape ``(n_groups,)``; a group without rows gets 1.0),
    else one (shape ``(1,)``).

    Raises:
        DataError: empty or mismatched inputs.
    """
    if logits.ndim != 2 or logits.shape[0] == 0 or y.shape[0] != logits.shape[0]:
        raise DataError(BAD_INPUTS)
    z, yy = logits.detach().double().cpu(), y.detach().long().cpu()
    codes = torch.zeros_like(yy) if s is None else s.detach().long().cpu()
    count = 1 if s is None else n_groups
    grid = TEMPERATURE_GRID
    out = torch.ones(count, dtype=torch.float64)
    for g in range(count):
        rows = codes == g
        if not rows.any():
            continue
        scaled = z[rows][None, :, :] / grid[:, None, None]  # (grid, n_g, classes)
        target = yy[rows][None, :].expand(grid.numel(), -1)
        nll = F.cross_entropy(scaled.transpose(1, 2), target, reduction="none").mean(dim=1)
        out[g] = grid[int(torch.argmin(nll))]
    return out
