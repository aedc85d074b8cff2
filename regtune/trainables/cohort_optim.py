"""The optimizer step of K stacked members at once, and each member's schedule.

The maths is torch's own single-tensor ``AdamW`` / ``SGD`` (the CPU path a
solo :class:`~regtune.trainables.loop.Trainer` takes), written over a
``(K, P)`` tensor with one row per member and the per-member hyperparameters
(learning rate, weight decay, beta1 / momentum, bias corrections) as
``(K, 1)`` columns computed in double precision exactly as torch computes
its Python-float ones.

Schedules are not re-derived: :class:`MemberSchedule` drives a real torch
optimizer and scheduler (``loop._make_optimizer`` / ``loop._make_scheduler``)
over the member's parameter-free shell and reads the learning rate (and
one-cycle's beta1 or momentum) in effect at each step, so cosine and
one-cycle follow torch's recursive formulas to the last bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from regtune.trainables.config import TrainConfig
from regtune.trainables.loop import _make_optimizer, _make_scheduler

__all__ = ["FusedAdamW", "FusedSGD", "MemberSchedule", "StepValues"]


@dataclass(frozen=True)
class StepValues:
    """What one member's optimizer uses at one step."""

    lr: float
    #: AdamW's beta1, or SGD's momentum (one-cycle moves both).
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    dampening: float = 0.0


class MemberSchedule:
    """A member's torch optimizer + scheduler, stepped only to read values.

    The optimizer holds the shell model's parameters, which never get a
    gradient, so ``optimizer.step()`` changes nothing; it is called so the
    scheduler sees the pattern it expects (optimizer step, then scheduler
    step). ``values(t)`` is the :class:`StepValues` in effect at the member's
    optimizer step ``t`` (0-based); they are recorded as the schedule is
    advanced, so each step is computed once.
    """

    def __init__(
        self,
        shell: nn.Module,
        cfg: TrainConfig,
        steps_per_epoch: int,
        *,
        start: int = 0,
        optimizer_state: Mapping[str, Any] | None = None,
        scheduler_state: Mapping[str, Any] | None = None,
    ) -> None:
        self.optimizer = _make_optimizer(shell, cfg)
        self.scheduler = _make_scheduler(self.optimizer, cfg, steps_per_epoch)
        if optimizer_state is not None:
            # Only the param_groups matter here (lr, betas, momentum, ...).
            self.optimizer.load_state_dict(
                {"state": {}, "param_groups": optimizer_state["param_groups"]}
            )
        if self.scheduler is not None and scheduler_state is not None:
            self.scheduler.load_state_dict(dict(scheduler_state))
        self.sgd = isinstance(self.optimizer, torch.optim.SGD)
        self.position = start
        self._start = start
        self._values: list[StepValues] = []

    def _read(self) -> StepValues:
        group = self.optimizer.param_groups[0]
        if self.sgd:
            return StepValues(
                lr=float(group["lr"]),
                beta1=float(group["momentum"]),
                beta2=0.0,
                eps=0.0,
                weight_decay=float(group["weight_decay"]),
                dampening=float(group["dampening"]),
            )
        b1, b2 = group["betas"]
        return StepValues(
            lr=float(group["lr"]),
            beta1=float(b1),
            beta2=float(b2),
            eps=float(group["eps"]),
            weight_decay=float(group["weight_decay"]),
        )

    def advance_to(self, step: int) -> None:
        """Step the optimizer/scheduler pair until it stands at ``step``."""
        while self.position < step:
            if self.scheduler is None:
                self.position = step
                return
            self.optimizer.step()
            with warnings.catch_warnings():
                # A scheduler restored mid-run warns that optimizer.step() was
                # not seen since: here it never changes a parameter anyway.
                warnings.simplefilter("ignore", UserWarning)
                self.scheduler.step()
            self.position += 1

    def values(self, step: int) -> StepValues:
        """The values in effect at optimizer step ``step`` (>= the start)."""
        if self.scheduler is None:
            if not self._values:
                self._values.append(self._read())
            return self._values[0]
        index = step - self._start
        while len(self._values) <= index:
            self.advance_to(self._start + len(self._values))
            self._values.append(self._read())
        return self._values[index]


def _column(values: Sequence[float], like: Tensor) -> Tensor:
    """Python doubles -> a ``(K, 1)`` column in ``like``'s dtype and device."""
    return torch.tensor(values, dtype=torch.float64).to(like.dtype).to(like.device).unsqueeze(1)


def _pick(state: Tensor, rows: Tensor, columns: Tensor | None) -> Tensor:
    """A copy of ``state[rows]``, restricted to ``columns`` when given."""
    picked = state[rows]  # advanced indexing copies
    return picked if columns is None else picked[:, columns]


@dataclass
class FusedAdamW:
    """``torch.optim.AdamW`` (single-tensor, no amsgrad) over ``(K, P)`` rows.

    ``steps[k]`` is member k's step count (torch's ``state["step"]``).
    """

    exp_avg: Tensor
    exp_avg_sq: Tensor
    steps: list[int] = field(default_factory=list)

    @classmethod
    def zeros(cls, params: Tensor) -> FusedAdamW:
        """Fresh state for ``params`` (K, P): no step taken yet."""
        return cls(torch.zeros_like(params), torch.zeros_like(params), [0] * int(params.shape[0]))

    @torch.no_grad()
    def step(self, params: Tensor, grad: Tensor, values: Sequence[StepValues]) -> None:
        """One AdamW step of every row with its own :class:`StepValues`."""
        self.steps = [s + 1 for s in self.steps]
        if any(v.weight_decay != 0 for v in values):
            params.mul_(_column([1 - v.lr * v.weight_decay for v in values], params))
        self.exp_avg.lerp_(grad, _column([1 - v.beta1 for v in values], params))
        beta2 = {v.beta2 for v in values}
        if len(beta2) == 1:
            b2 = beta2.pop()
            self.exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        else:
            self.exp_avg_sq.mul_(_column([v.beta2 for v in values], params)).add_(
                grad * grad * _column([1 - v.beta2 for v in values], params)
            )
        bc1 = [1 - v.beta1**s for v, s in zip(values, self.steps, strict=True)]
        bc2_sqrt = [(1 - v.beta2**s) ** 0.5 for v, s in zip(values, self.steps, strict=True)]
        neg_step = [-(v.lr / b) for v, b in zip(values, bc1, strict=True)]
        eps = {v.eps for v in values}
        denom = self.exp_avg_sq.sqrt() / _column(bc2_sqrt, params)
        if len(eps) == 1:
            denom.add_(eps.pop())
        else:
            denom.add_(_column([v.eps for v in values], params))
        # addcdiv computes self + (value * t1) / t2; the same order here.
        params.add_(self.exp_avg * _column(neg_step, params) / denom)

    def select(self, index: Tensor, columns: Tensor | None = None) -> FusedAdamW:
        """The state of the rows in ``index`` (a 1-D long tensor), of only
        ``columns`` when given (a padded member's own entries)."""
        rows = index.tolist()
        return FusedAdamW(
            _pick(self.exp_avg, index, columns),
            _pick(self.exp_avg_sq, index, columns),
            [self.steps[i] for i in rows],
        )

    def row(self, k: int) -> dict[str, Tensor]:
        """Member ``k``'s state, torch's keys, flat."""
        return {"exp_avg": self.exp_avg[k].clone(), "exp_avg_sq": self.exp_avg_sq[k].clone()}


@dataclass
class FusedSGD:
    """``torch.optim.SGD`` (single-tensor, no nesterov) over ``(K, P)`` rows."""

    buf: Tensor
    steps: list[int] = field(default_factory=list)

    @classmethod
    def zeros(cls, params: Tensor) -> FusedSGD:
        """Fresh state: no momentum buffer yet (torch creates it at step 1)."""
        return cls(torch.zeros_like(params), [0] * int(params.shape[0]))

    @torch.no_grad()
    def step(self, params: Tensor, grad: Tensor, values: Sequence[StepValues]) -> None:
        """One SGD step of every row with its own :class:`StepValues`."""
        if any(v.weight_decay != 0 for v in values):
            grad = grad + params * _column([v.weight_decay for v in values], params)
        first = [s == 0 for s in self.steps]
        if all(first):
            self.buf.copy_(grad)
        else:
            momentum = _column([v.beta1 for v in values], params)
            keep = _column([1 - v.dampening for v in values], params)
            updated = self.buf * momentum + grad * keep
            mask = torch.tensor(first, device=params.device).unsqueeze(1)
            self.buf.copy_(torch.where(mask, grad, updated))
        # A member with momentum 0 keeps no buffer in torch: buf == grad then.
        params.add_(self.buf * _column([-v.lr for v in values], params))
        self.steps = [s + 1 for s in self.steps]

    def select(self, index: Tensor, columns: Tensor | None = None) -> FusedSGD:
        """The state of the rows in ``index`` (a 1-D long tensor), of only
        ``columns`` when given (a padded member's own entries)."""
        return FusedSGD(_pick(self.buf, index, columns), [self.steps[i] for i in index.tolist()])

    def row(self, k: int) -> dict[str, Tensor]:
        """Member ``k``'s state, torch's key, flat."""
        return {"momentum_buffer": self.buf[k].clone()}
