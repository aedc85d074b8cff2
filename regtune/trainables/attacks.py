"""L-inf adversarial examples for adversarial training and robust accuracy.

Conventions shared by every function here:

* ``eps`` is in INPUT units: the inputs the model sees (standardized features
  for tabular data, [0, 1] pixels for images), not raw data units.
* ``mask`` is a bool ``(n_features,)`` tensor of the features that may be
  perturbed (None: all). Masked-out features (one-hot columns, ...) come back
  bit-identical to the input.
* ``bounds`` is ``(lo, hi)`` or None; perturbed features are clamped into it
  (pixels stay valid images).
* Randomness (random starts) comes only from ``generator``.
* The model's train/eval mode is left as the caller set it. Training calls
  keep train mode (dropout active during the attack, as in Wong et al. 2020
  and Madry et al. 2018); :func:`robust_accuracy` switches to eval mode and
  restores the previous mode. TRADES (:func:`trades_loss`) follows the same
  rule, which is NOT what Zhang et al.'s reference code does: it crafts
  ``x_adv`` in eval mode (dropout off) and switches back to train mode for
  the loss. Here the natural target and every inner step draw their own
  dropout masks, so with dropout the attack is somewhat weaker when judged
  at eval: on a toy MLP with dropout 0.5, KL(p(x) || p(x_adv)) measured in
  eval mode was 3.08 for the train-mode attack against 3.32 for the
  reference's eval-mode one. Without dropout (``model.dropout: 0``; the
  models have no batch norm) the two are the same. Kept so that stored
  TRADES runs reproduce, and so that every attack here is crafted against
  the network being trained.
* Input gradients come from ``torch.autograd.grad(loss, delta)`` only, so no
  parameter's value or ``.grad`` is touched and no weight gradient is even
  computed. (Spectral-norm power-iteration buffers do advance in train mode,
  exactly as in any training forward.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regtune.errors import DataError, SpecError
from regtune.trainables.models import model_device
from regtune.trainables.penalties import feature_mask, random_normal_like, random_uniform_like

__all__ = [
    "FGSM_RS_STEP_FACTOR",
    "PGD_STEP_FACTOR",
    "TRADES_INIT_STD",
    "fgsm_rs",
    "pgd",
    "robust_accuracy",
    "trades_loss",
]

#: FGSM-RS default step size is this times eps (Wong et al. 2020).
FGSM_RS_STEP_FACTOR = 1.25
#: PGD / TRADES default step size is this times eps / steps (Madry et al. 2018).
PGD_STEP_FACTOR = 2.5
#: TRADES starts its inner maximization from x + this * N(0, 1) (Zhang et al. 2019).
TRADES_INIT_STD = 0.001

Bounds = tuple[float, float]

BAD_EPS = "penalties.adversarial.eps must be >= 0; got {eps!r}"
BAD_STEPS = "{name} must be >= 1; got {value!r}"
BAD_STEP_SIZE = "penalties.adversarial.step_size must be > 0; got {value!r}"
BAD_BOUNDS = "input bounds must be (lo, hi) with lo < hi; got {bounds!r}"
NO_EXAMPLES = "robust_accuracy needs at least one example; got an empty batch"


def fgsm_rs(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    step_size: float | None = None,
    mask: Tensor | None = None,
    bounds: Bounds | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """FGSM with a uniform random start ("fast is better than free", Wong et al. 2020).

    ``delta ~ U(-eps, eps)``, one signed-gradient step of ``step_size``
    (default ``1.25 * eps``), projected back to the eps-ball. Costs one
    forward and one input-only backward.

    Returns:
        ``x_adv`` (detached), same shape as ``x``.
    """
    _check(eps, bounds)
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    alpha = FGSM_RS_STEP_FACTOR * eps if step_size is None else _step(step_size)
    m = feature_mask(x, mask)
    delta = _project((2.0 * random_uniform_like(x, generator) - 1.0) * eps, x, eps, m, bounds)
    grad = _input_grad(model, x, delta, y)
    delta = _project(delta + alpha * grad.sign(), x, eps, m, bounds)
    return _finish(x, delta, m, bounds)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    step_size: float | None = None,
    steps: int,
    mask: Tensor | None = None,
    bounds: Bounds | None = None,
    random_start: bool = True,
    restarts: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L-inf PGD on the cross-entropy (Madry et al. 2018).

    ``steps`` signed-gradient steps of ``step_size`` (default
    ``2.5 * eps / steps``) from a uniform random start (or from ``x``), each
    projected onto the eps-ball, the mask and the bounds. With ``restarts > 1``
    each example keeps its worst restart: a misclassifying one first, then the
    one with the highest loss.

    Returns:
        ``x_adv`` (detached), same shape as ``x``.

    Raises:
        SpecError: ``eps < 0``, ``steps < 1``, ``restarts < 1`` or bad bounds.
    """
    _check(eps, bounds)
    if steps < 1:
        raise SpecError(BAD_STEPS.format(name="penalties.adversarial.steps", value=steps))
    if restarts < 1:
        raise SpecError(BAD_STEPS.format(name="restarts", value=restarts))
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    alpha = PGD_STEP_FACTOR * eps / steps if step_size is None else _step(step_size)
    m = feature_mask(x, mask)

    best = _pgd_once(model, x, y, eps, alpha, steps, m, bounds, random_start, generator)
    if restarts == 1:
        return best
    best_wrong, best_loss = _per_example_loss(model, best, y)
    for _ in range(restarts - 1):
        x_adv = _pgd_once(model, x, y, eps, alpha, steps, m, bounds, random_start, generator)
        wrong, loss = _per_example_loss(model, x_adv, y)
        # A misclassifying restart beats any that is not; ties go to the higher loss.
        better = (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))
        best = torch.where(better.unsqueeze(1), x_adv, best)
        best_wrong = best_wrong | wrong
        best_loss = torch.where(better, loss, best_loss)
    return best


def trades_loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    step_size: float | None = None,
    steps: int,
    beta: float,
    mask: Tensor | None = None,
    bounds: Bounds | None = None,
    generator: torch.Generator | None = None,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """TRADES objective (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(p(x) || p(x_adv))``.

    ``label_smoothing`` smooths the targets of the natural cross-entropy term
    (as ``F.cross_entropy`` does); the KL term compares two predictions and
    has no targets to smooth.

    The inner maximization runs ``steps`` signed-gradient steps on the KL
    divergence to the (fixed) natural prediction, starting from
    ``x + 0.001 * N(0, 1)``. The outer KL is batch-mean and differentiable
    through both the natural and the adversarial prediction, as in the
    reference implementation.

    Returns:
        ``(loss, natural_logits)``: the 0-dim loss to backpropagate and the
        logits on the clean ``x`` (with their graph), e.g. for train accuracy.
    """
    _check(eps, bounds)
    if steps < 1:
        raise SpecError(BAD_STEPS.format(name="penalties.adversarial.steps", value=steps))
    x = x.detach()
    x_adv = x
    if eps > 0.0:
        alpha = PGD_STEP_FACTOR * eps / steps if step_size is None else _step(step_size)
        m = feature_mask(x, mask)
        with torch.no_grad():
            target = F.log_softmax(model(x), dim=1)
        delta = _project(TRADES_INIT_STD * random_normal_like(x, generator), x, eps, m, bounds)
        for _ in range(steps):
            delta = delta.detach().requires_grad_(True)
            with torch.enable_grad():
                log_adv = F.log_softmax(model(x + delta), dim=1)
                kl = F.kl_div(log_adv, target, reduction="sum", log_target=True)
                (grad,) = torch.autograd.grad(kl, delta)
            delta = _project(delta.detach() + alpha * grad.sign(), x, eps, m, bounds)
        x_adv = _finish(x, delta, m, bounds)

    natural_logits = model(x)
    natural = F.cross_entropy(natural_logits, y, label_smoothing=label_smoothing)
    robust = F.kl_div(
        F.log_softmax(model(x_adv), dim=1),
        F.log_softmax(natural_logits, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return natural + beta * robust, natural_logits


def robust_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int,
    mask: Tensor | None = None,
    bounds: Bounds | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 1024,
    restarts: int = 1,
) -> float:
    """Accuracy under L-inf PGD (``steps`` steps, default step size), in eval mode.

    Batches are moved to the model's device. The model's previous train/eval
    mode is restored, even on error.

    Raises:
        DataError: ``x`` is empty.
    """
    n = x.shape[0]
    if n == 0:
        raise DataError(NO_EXAMPLES)
    device = model_device(model)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for start in range(0, n, batch_size):
            xb = x[start : start + batch_size].to(device)
            yb = y[start : start + batch_size].to(device)
            x_adv = pgd(
                model,
                xb,
                yb,
                eps=eps,
                steps=steps,
                mask=mask,
                bounds=bounds,
                restarts=restarts,
                generator=generator,
            )
            with torch.no_grad():
                correct += int((model(x_adv).argmax(dim=1) == yb).sum().item())
    finally:
        model.train(was_training)
    return correct / n


def _check(eps: float, bounds: Bounds | None) -> None:
    if not eps >= 0.0:
        raise SpecError(BAD_EPS.format(eps=eps))
    if bounds is not None and not bounds[0] < bounds[1]:
        raise SpecError(BAD_BOUNDS.format(bounds=bounds))


def _step(step_size: float) -> float:
    if not step_size > 0.0:
        raise SpecError(BAD_STEP_SIZE.format(value=step_size))
    return step_size


def _pgd_once(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    alpha: float,
    steps: int,
    m: Tensor | None,
    bounds: Bounds | None,
    random_start: bool,
    generator: torch.Generator | None,
) -> Tensor:
    if random_start:
        start = (2.0 * random_uniform_like(x, generator) - 1.0) * eps
    else:
        start = torch.zeros_like(x)
    delta = _project(start, x, eps, m, bounds)
    for _ in range(steps):
        grad = _input_grad(model, x, delta, y)
        delta = _project(delta + alpha * grad.sign(), x, eps, m, bounds)
    return _finish(x, delta, m, bounds)


def _per_example_loss(model: nn.Module, x_adv: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(misclassified, cross-entropy) per example."""
    with torch.no_grad():
        logits = model(x_adv)
        return logits.argmax(dim=1) != y, F.cross_entropy(logits, y, reduction="none")


def _input_grad(model: nn.Module, x: Tensor, delta: Tensor, y: Tensor) -> Tensor:
    """d CE(model(x + delta), y) / d delta, without touching parameter gradients."""
    delta = delta.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)
    return grad


def _project(
    delta: Tensor, x: Tensor, eps: float, m: Tensor | None, bounds: Bounds | None
) -> Tensor:
    """Onto the bounds, then the eps-ball, then the mask (so mask and eps always hold)."""
    if bounds is not None:
        delta = (x + delta).clamp(bounds[0], bounds[1]) - x
    delta = delta.clamp(-eps, eps)
    return delta if m is None else delta * m


def _finish(x: Tensor, delta: Tensor, m: Tensor | None, bounds: Bounds | None) -> Tensor:
    """``x + delta`` clamped into the bounds, with masked-out features exactly ``x``."""
    x_adv = x + delta
    if bounds is not None:
        x_adv = x_adv.clamp(bounds[0], bounds[1])
    if m is not None:
        x_adv = torch.where(m > 0, x_adv, x)
    return x_adv.detach()
