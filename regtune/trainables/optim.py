"""torch's ``AdamW`` and ``SGD`` without the 2 CPU-seconds of ``torch._dynamo``.

Every ``torch.optim.Optimizer`` imports ``torch._dynamo`` the first time it
steps (``step`` is wrapped to mark graph breaks for ``torch.compile``) and
the first time ``zero_grad``, ``state_dict``, ``load_state_dict`` or
``add_param_group`` runs (each is wrapped in ``torch._disable_dynamo``). That
import costs about 2 CPU-seconds and is paid once by every process that
trains: each Tune trial worker, each ``regtune train``, each cohort worker.
Those wrappers only matter under ``torch.compile``, which regtune's training
does not use, so :class:`AdamW` and :class:`SGD` call the functions the
wrappers wrap (``functools.wraps`` keeps them as ``__wrapped__``) and nothing
else changes:

- the update maths is torch's own (``torch.optim.Adam.step``'s and
  ``torch.optim.SGD.step``'s bodies, run under the grad mode torch's wrapper
  sets), so runs are bit-identical with ``torch.optim.AdamW`` /
  ``torch.optim.SGD``;
- they are subclasses of those classes, so ``state_dict`` has torch's layout
  (checkpoints load both ways), torch's learning-rate schedulers drive them,
  and torch's step hooks and profiler records run once a step, as torch's.

While compiling (``torch.compiler.is_compiling()``), and on a torch build
whose wrappers are not the ones known here (each is checked by the name of
its code), every method is torch's own, wrappers included (which then
imports ``torch._dynamo`` as before): behaviour never depends on this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["SGD", "AdamW"]


#: The code names of torch 2.13's wrappers that are safe to skip outside
#: ``torch.compile``: ``_disable_dynamo``'s and ``_use_grad_for_differentiable``'s.
_DYNAMO_WRAPPER = "inner"
_GRAD_WRAPPER = "_use_grad"


def _unhooked(step: Any) -> Any:
    """``step`` without ``Optimizer.profile_hook_step``'s layers: once torch
    has built an optimizer of a class, that class's ``step`` carries one (and
    each of these classes gets its own on its own ``step``)."""
    while getattr(step, "hooked", False) and hasattr(step, "__wrapped__"):
        step = step.__wrapped__
    return step


def _bare(method: Any, wrapper: str) -> Callable[..., Any] | None:
    """The function under ``method``'s one wrapper, when that wrapper's code is
    named ``wrapper`` and the function under it wraps nothing; else None."""
    inner = getattr(method, "__wrapped__", None)
    code = getattr(method, "__code__", None)
    if inner is None or code is None or code.co_name != wrapper:
        return None
    return None if hasattr(inner, "__wrapped__") or not callable(inner) else inner


_ZERO_GRAD = _bare(Optimizer.zero_grad, _DYNAMO_WRAPPER)
_STATE_DICT = _bare(Optimizer.state_dict, _DYNAMO_WRAPPER)
_LOAD_STATE_DICT = _bare(Optimizer.load_state_dict, _DYNAMO_WRAPPER)
_ADD_PARAM_GROUP = _bare(Optimizer.add_param_group, _DYNAMO_WRAPPER)


def _torch_path() -> bool:
    """Whether torch's own wrappers must run (compiling now)."""
    return bool(torch.compiler.is_compiling())


class _WithoutDynamo(Optimizer):
    """Optimizer methods that skip the ``torch._dynamo`` wrappers."""

    #: torch's ``step`` with its own wrappers (without the profiling hook).
    _torch_step: Callable[..., Any]
    #: The function under them, or None (then ``_torch_step`` always runs).
    _bare_step: Callable[..., Any] | None

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update, as the parent's ``step`` (grad off unless differentiable)."""
        bare = type(self)._bare_step
        if bare is None or _torch_path():
            return type(self)._torch_step(self, closure)
        with torch.set_grad_enabled(bool(self.defaults["differentiable"])):
            return bare(self, closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset gradients, as ``torch.optim.Optimizer.zero_grad``."""
        if _ZERO_GRAD is None or _torch_path():
            Optimizer.zero_grad(self, set_to_none)
        else:
            _ZERO_GRAD(self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict (same layout as ``torch.optim``'s classes)."""
        if _STATE_DICT is None or _torch_path():
            return Optimizer.state_dict(self)
        return _STATE_DICT(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict written by this class or by torch's."""
        if _LOAD_STATE_DICT is None or _torch_path():
            Optimizer.load_state_dict(self, state_dict)
        else:
            _LOAD_STATE_DICT(self, state_dict)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group, as ``torch.optim.Optimizer.add_param_group``."""
        if _ADD_PARAM_GROUP is None or _torch_path():
            Optimizer.add_param_group(self, param_group)
        else:
            _ADD_PARAM_GROUP(self, param_group)


class AdamW(_WithoutDynamo, torch.optim.AdamW):
    """``torch.optim.AdamW``, bit for bit, without importing ``torch._dynamo``."""

    # Class attributes read through the class (never bound to an instance).
    _torch_step = _unhooked(torch.optim.Adam.step)
    _bare_step = _bare(_torch_step, _GRAD_WRAPPER)


class SGD(_WithoutDynamo, torch.optim.SGD):
    """``torch.optim.SGD``, bit for bit, without importing ``torch._dynamo``."""

    # Class attributes read through the class (never bound to an instance).
    _torch_step = _unhooked(torch.optim.SGD.step)
    _bare_step = _bare(_torch_step, _GRAD_WRAPPER)
