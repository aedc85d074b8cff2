"""Regularizers that act on the loss, the weights or the batch.

How the epoch loop uses them (the optimizer owns decoupled weight decay)::

    x = add_input_noise(x, p.input_noise, mask, gen)          # if input_noise > 0
    if p.mixup > 0:
        t = smooth_targets(y, n_classes, p.label_smoothing)   # eps = 0 gives one-hot
        x, t = mixup(x, t, p.mixup, gen)
        loss = soft_cross_entropy(model(x), t)
    else:
        loss = F.cross_entropy(model(x), y, label_smoothing=p.label_smoothing)
    loss = loss + weight_penalty(model, p)
    loss.backward(); optimizer.step()
    if p.max_norm > 0:
        apply_max_norm(model, p.max_norm)

``smooth_targets`` + ``soft_cross_entropy`` equals
``F.cross_entropy(label_smoothing=eps)`` exactly, so the loop may use the
cheaper hard-label form whenever it does not mix labels.

"Weights" means every parameter with two or more dimensions (Linear matrices,
conv kernels); biases are never penalized. Under spectral norm that is the raw
``parametrizations.weight.original`` parameter, the one the optimizer updates.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regtune.errors import DataError, SpecError
from regtune.trainables.config import PenaltiesConfig

__all__ = [
    "add_input_noise",
    "apply_max_norm",
    "feature_mask",
    "mixup",
    "random_normal_like",
    "random_uniform_like",
    "smooth_targets",
    "soft_cross_entropy",
    "weight_matrices",
    "weight_penalty",
    "weight_penalty_coefficients",
]

BAD_MIXUP_ALPHA = "penalties.mixup: the Beta(alpha, alpha) parameter must be > 0; got {alpha!r}"
BAD_MASK = (
    "feature mask has shape {got} and dtype {dtype}; expected a bool tensor of shape ({n},), "
    "one entry per input feature"
)
BAD_SMOOTHING = "penalties.label_smoothing must be in [0, 1); got {eps!r}"


def weight_matrices(model: nn.Module) -> list[Tensor]:
    """The parameters the weight penalties, max-norm and sparsity act on (ndim >= 2)."""
    return [p for p in model.parameters() if p.ndim >= 2]


def weight_penalty_coefficients(p: PenaltiesConfig) -> tuple[float, float]:
    """``(c1, c2)``: the total L1 and squared-L2 coefficients, elastic net included."""
    en = p.elastic_net
    return p.l1 + en.strength * en.l1_ratio, p.l2 + en.strength * (1.0 - en.l1_ratio) / 2.0


def weight_penalty(model: nn.Module, p: PenaltiesConfig) -> Tensor:
    """``l1*|w|_1 + l2*|w|_2^2 + en*(r*|w|_1 + (1-r)/2*|w|_2^2)`` over weight matrices.

    Returns a 0-dim tensor to add to the loss. When every coefficient is 0 it
    returns a constant CPU zero without touching the parameters (a 0-dim CPU
    tensor adds to a loss on any device).
    """
    c1, c2 = weight_penalty_coefficients(p)
    if c1 == 0.0 and c2 == 0.0:
        return torch.zeros(())
    total: Tensor | None = None
    for w in weight_matrices(model):
        term = w.new_zeros(())
        if c1 != 0.0:
            term = term + c1 * w.abs().sum()
        if c2 != 0.0:
            term = term + c2 * w.pow(2).sum()
        total = term if total is None else total + term
    return torch.zeros(()) if total is None else total


@torch.no_grad()
def apply_max_norm(model: nn.Module, max_norm: float) -> None:
    """Rescale each output unit's incoming weights to L2 norm <= ``max_norm``, in place.

    A row of a Linear weight, a whole output filter of a conv kernel. Call it
    after ``optimizer.step()`` (Srivastava et al. 2014).
    """
    for w in weight_matrices(model):
        w.copy_(torch.renorm(w, p=2, dim=0, maxnorm=max_norm))


def random_normal_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator``'s device.

    Drawing on the generator's device then moving keeps one CPU generator
    usable (and reproducible) whatever device the batch lives on.
    """
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
    return noise.to(x.device)


def random_uniform_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform [0, 1) noise shaped like ``x``; see :func:`random_normal_like`."""
    device = generator.device if generator is not None else x.device
    noise = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype)
    return noise.to(x.device)


def feature_mask(x: Tensor, mask: Tensor | None) -> Tensor | None:
    """``mask`` as a float (1, n_features) multiplier on ``x``'s device; None means all.

    Raises:
        DataError: the mask does not have one bool entry per feature.
    """
    if mask is None:
        return None
    if mask.dtype != torch.bool or mask.shape != (x.shape[1],):
        raise DataError(BAD_MASK.format(got=tuple(mask.shape), dtype=mask.dtype, n=x.shape[1]))
    return mask.to(device=x.device, dtype=x.dtype).unsqueeze(0)


def add_input_noise(
    x: Tensor, std: float, mask: Tensor | None, generator: torch.Generator | None
) -> Tensor:
    """``x + std * N(0, 1)`` on the features where ``mask`` is True (all if None).

    One-hot and other masked-out columns keep their exact values. Returns a new
    tensor; ``std == 0`` returns ``x`` itself.
    """
    if std == 0.0:
        return x
    noise = std * random_normal_like(x, generator)
    m = feature_mask(x, mask)
    if m is not None:
        noise = noise * m
    return x + noise


def mixup(
    x: Tensor, y_onehot: Tensor, alpha: float, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Mixup (Zhang et al. 2018): ``lam*a + (1-lam)*b`` with a shuffled copy of the batch.

    One ``lam ~ Beta(alpha, alpha)`` per batch. Both ``lam`` and the shuffle
    come from ``generator`` (the Beta draw through a numpy generator seeded
    from it), so the same generator state gives the same mix.

    Args:
        x: inputs ``(batch, n_features)``.
        y_onehot: target distributions ``(batch, n_classes)`` (one-hot or
            smoothed, see :func:`smooth_targets`).
        alpha: Beta parameter, > 0.

    Returns:
        ``(x_mixed, y_mixed)``; train on them with :func:`soft_cross_entropy`.

    Raises:
        SpecError: ``alpha <= 0``.
    """
    if not alpha > 0.0:
        raise SpecError(BAD_MIXUP_ALPHA.format(alpha=alpha))
    device = generator.device if generator is not None else x.device
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=generator, device=device).to(x.device)
    x_mixed = lam * x + (1.0 - lam) * x[perm]
    y_mixed = lam * y_onehot + (1.0 - lam) * y_onehot[perm]
    return x_mixed, y_mixed


def smooth_targets(y: Tensor, n_classes: int, eps: float) -> Tensor:
    """Label-smoothed targets: ``(1 - eps) * onehot(y) + eps / n_classes``.

    Same definition as ``F.cross_entropy(label_smoothing=eps)``.

    Raises:
        SpecError: ``eps`` outside [0, 1).
    """
    if not 0.0 <= eps < 1.0:
        raise SpecError(BAD_SMOOTHING.format(eps=eps))
    onehot = F.one_hot(y.long(), n_classes).to(torch.get_default_dtype())
    if eps == 0.0:
        return onehot
    return onehot * (1.0 - eps) + eps / n_classes


def soft_cross_entropy(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Mean over the batch of ``-sum_c target_c * log_softmax(logits)_c``."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
