"""torch's ``AdamW`` and ``SGD`` without the 2 CPU-seconds of ``torch._dynamo``.

Every ``torch.optim.Optimizer`` imports ``torch._dynamo`` the first time it
steps (``step`` is wrapped to mark graph breaks for ``torch.compile``) and
the first time ``zero_grad``, ``state_dict``, ``load_state_dict`` or
``add_param_group`` runs (each is wrapped in ``torch._disable_dynamo``). That
import costs about 2 CPU-seconds and is paid once by every process that
trains: each Tune trial worker, each ``regtune train``, each cohort worker.
regtune never runs its training under ``torch.compile``, where those wrappers
would matter, so :class:`AdamW` and :class:`SGD` call the functions the
wrappers wrap (``functools.wraps`` keeps them as ``__wrapped__``) and nothing
else changes:

- the update maths is torch's own (``torch.optim.Adam.step``'s and
  ``torch.optim.SGD.step``'s bodies, run under the same grad mode), so runs
  are bit-identical with ``torch.optim.AdamW`` / ``torch.optim.SGD``;
- they are subclasses of those classes, so ``state_dict`` has torch's layout
  (checkpoints load both ways) and torch's learning-rate schedulers drive
  them.

Must not be used under ``torch.compile``. Where a torch build lacks one of
the wrapped functions, that method falls back to torch's own (which then
imports ``torch._dynamo`` as before): behaviour never depends on this.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["SGD", "AdamW"]


def _unwrapped(method: Any) -> Callable[..., Any] | None:
    """The function under ``method``'s wrappers, or None where it has none.

    Unwrapped to the end: once a torch optimizer of that class has been built,
    its ``step`` also carries ``Optimizer.profile_hook_step``, which every
    instance of these classes adds again on its own ``step``.
    """
    if getattr(method, "__wrapped__", None) is None:
        return None
    inner = inspect.unwrap(method)
    return inner if callable(inner) else None


_ZERO_GRAD = _unwrapped(Optimizer.zero_grad)
_STATE_DICT = _unwrapped(Optimizer.state_dict)
_LOAD_STATE_DICT = _unwrapped(Optimizer.load_state_dict)
_ADD_PARAM_GROUP = _unwrapped(Optimizer.add_param_group)
_ADAM_STEP = _unwrapped(torch.optim.Adam.step)
_SGD_STEP = _unwrapped(torch.optim.SGD.step)


class _WithoutDynamo(Optimizer):
    """Optimizer methods that skip the ``torch._dynamo`` wrappers."""

    _plain_step: Callable[..., Any] | None = None

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update, as the parent's ``step`` (grad off unless differentiable)."""
        plain = type(self)._plain_step
        if plain is None:
            return super().step(closure)
        with torch.set_grad_enabled(bool(self.defaults["differentiable"])):
            return plain(self, closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset gradients, as ``torch.optim.Optimizer.zero_grad``."""
        if _ZERO_GRAD is None:
            super().zero_grad(set_to_none)
        else:
            _ZERO_GRAD(self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict (same layout as ``torch.optim``'s classes)."""
        if _STATE_DICT is None:
            return super().state_dict()
        return _STATE_DICT(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict written by this class or by torch's."""
        if _LOAD_STATE_DICT is None:
            super().load_state_dict(state_dict)
        else:
            _LOAD_STATE_DICT(self, state_dict)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group, as ``torch.optim.Optimizer.add_param_group``."""
        if _ADD_PARAM_GROUP is None:
            super().add_param_group(param_group)
        else:
            _ADD_PARAM_GROUP(self, param_group)


class AdamW(_WithoutDynamo, torch.optim.AdamW):
    """``torch.optim.AdamW``, bit for bit, without importing ``torch._dynamo``."""

    _plain_step = staticmethod(_ADAM_STEP) if _ADAM_STEP is not None else None


class SGD(_WithoutDynamo, torch.optim.SGD):
    """``torch.optim.SGD``, bit for bit, without importing ``torch._dynamo``."""

    _plain_step = staticmethod(_SGD_STEP) if _SGD_STEP is not None else None
