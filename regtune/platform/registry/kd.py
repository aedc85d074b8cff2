"""Knowledge distillation as a training run: the loop's trainer with a teacher term.

The student is trained by :class:`regtune.trainables.loop.Trainer` (so every
configured regularizer, early stopping and the metrics work unchanged) on

    (1 - alpha) * task_loss + alpha * (T^2 * KL(teacher_T || student_T) + weight_penalty)

where ``task_loss`` is the loop's own objective on the hard labels (with its
input noise, mixup, label smoothing, adversarial or fairness terms when
configured), ``*_T`` are softmax distributions at temperature ``T`` (Hinton et
al. 2015; the ``T^2`` keeps gradient scales comparable across temperatures),
and the teacher sees the clean batch. L1/L2/elastic-net penalties stay at
full strength whatever ``alpha`` is.

This module imports the training loop; serving never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from regtune.errors import SpecError
from regtune.trainables import penalties
from regtune.trainables.config import TrainConfig
from regtune.trainables.data import Dataset
from regtune.trainables.loop import Trainer

__all__ = ["DistillTrainer", "distillation_loss"]

BAD_TEMPERATURE = "--temperature {value!r} is not allowed; expected a number > 0"
BAD_ALPHA = "--alpha {value!r} is not allowed; expected a number in [0, 1]"


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, batch mean."""
    t = temperature
    target = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(
        F.log_softmax(student_logits / t, dim=1), target, log_target=True, reduction="batchmean"
    ) * (t * t)


def check_settings(temperature: float, alpha: float) -> None:
    """Raise :class:`SpecError` for a temperature <= 0 or alpha outside [0, 1]."""
    if not temperature > 0:
        raise SpecError(BAD_TEMPERATURE.format(value=temperature))
    if not 0.0 <= alpha <= 1.0:
        raise SpecError(BAD_ALPHA.format(value=alpha))


class DistillTrainer(Trainer):
    """A :class:`Trainer` whose batch loss adds the teacher's soft targets."""

    def __init__(
        self,
        config: TrainConfig | Mapping[str, Any],
        *,
        teacher: nn.Module,
        temperature: float,
        alpha: float,
        dataset: Dataset | None = None,
        device: str | torch.device | None = None,
        stored: bool = False,
    ) -> None:
        check_settings(temperature, alpha)
        super().__init__(config, dataset=dataset, device=device, stored=stored)
        self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        self.temperature = temperature
        self.alpha = alpha

    def _batch_loss(
        self, xb: torch.Tensor, yb: torch.Tensor, sb: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        loss, logits, plain = super()._batch_loss(xb, yb, sb)
        if self.alpha == 0.0:
            return loss, logits, plain
        with torch.no_grad():
            teacher_logits = self.teacher(xb)
        # The loop's logits may be of perturbed inputs; the teacher term uses the clean batch.
        student_logits = (
            logits if logits.shape[0] == xb.shape[0] and self._clean_inputs() else self.model(xb)
        )
        soft = distillation_loss(student_logits, teacher_logits, self.temperature)
        p = self.config.penalties
        if any(penalties.weight_penalty_coefficients(p)):
            soft = soft + penalties.weight_penalty(self.model, p)
        return (1.0 - self.alpha) * loss + self.alpha * soft, logits, plain

    def _clean_inputs(self) -> bool:
        p = self.config.penalties
        return (
            p.input_noise == 0
            and p.mixup == 0
            and (p.adversarial.method == "none" or p.adversarial.eps == 0)
        )
