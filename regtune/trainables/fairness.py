"""Group-fairness penalties (differentiable) and metrics (on hard predictions).

Penalties act on the positive-class probability ``p`` (``softmax(logits)[:, 1]``)
and integer group codes ``s``; add ``strength * penalty`` to the loss::

    p = logits.softmax(dim=1)[:, 1]
    loss = loss + strength * (dp_penalty(p, s) if kind == "dp" else eo_penalty(p, y, s))

A group absent from the batch (or from one label's slice of it) is skipped;
with fewer than two groups present the penalty is a zero with no gradient.

Metrics equal fairlearn's ``demographic_parity_difference`` and
``equalized_odds_difference`` (between groups, worst case) whenever every
group has examples of both labels. When a group has no example of a label,
fairlearn counts its rate for that label as 0; here that group is skipped for
that rate instead, the same rule as the penalties, so a perfect classifier
never scores 1.0 on an unlucky split.
"""

from __future__ import annotations

import torch
from torch import Tensor

from regtune.errors import Problem, SpecError

__all__ = [
    "EO_LABELS",
    "dp_difference",
    "dp_penalty",
    "eo_difference",
    "eo_penalty",
    "group_gap",
    "sharpen",
]

#: Labels whose per-group rates equalized odds compares (FPR for 0, TPR for 1).
EO_LABELS = (0, 1)

#: The config key a bad temperature is reported at.
TEMPERATURE_KEY = "penalties.fairness.temperature"
BAD_TEMPERATURE = "temperature must be a positive finite number; got {value!r}"


def group_gap(values: Tensor, s: Tensor) -> Tensor:
    """``max - min`` over the groups present in ``s`` of the mean of ``values``.

    Differentiable in ``values``; 0 with fewer than two groups present.
    """
    groups, inverse = torch.unique(s, return_inverse=True)
    if groups.numel() < 2:
        return values.new_zeros(())
    sums = values.new_zeros(groups.numel()).index_add(0, inverse, values)
    counts = torch.bincount(inverse, minlength=groups.numel()).to(values.dtype)
    means = sums / counts
    return means.max() - means.min()


def sharpen(p: Tensor, temperature: float = 1.0) -> Tensor:
    """``sigmoid(logit(p) / temperature)``: a soft indicator of ``p > 0.5``.

    ``logit(p)`` is the logit margin ``z_1 - z_0`` of a two-logit model, so
    this is the positive probability at a lower softmax temperature. At
    ``temperature=1`` it returns ``p`` itself; as it goes to 0 it tends to
    the hard prediction, and its gradient concentrates on the examples near
    the decision boundary, the only ones whose flip changes a hard rate.

    Raises:
        SpecError: ``temperature`` is not a positive finite number (a
            :class:`~regtune.errors.Problem` at ``penalties.fairness.temperature``).
    """
    if not (isinstance(temperature, (int, float)) and 0 < temperature < float("inf")):
        problem = Problem(TEMPERATURE_KEY, BAD_TEMPERATURE.format(value=temperature))
        raise SpecError(str(problem), [problem])
    if temperature == 1.0:
        return p
    # Clamped so a saturated softmax (p == 0 or 1 in float32) gives a finite logit.
    eps = torch.finfo(p.dtype).eps
    q = p.clamp(eps, 1.0 - eps)
    return torch.sigmoid((torch.log(q) - torch.log1p(-q)) / temperature)


def dp_penalty(p: Tensor, s: Tensor, *, temperature: float = 1.0) -> Tensor:
    """Demographic-parity gap of the mean positive probability across groups.

    With ``temperature < 1`` the probabilities are first :func:`sharpen`-ed,
    so the penalty tracks the gap of hard selection rates more closely.
    """
    return group_gap(sharpen(p, temperature), s)


def eo_penalty(p: Tensor, y: Tensor, s: Tensor, *, temperature: float = 1.0) -> Tensor:
    """Equalized-odds gap: the larger of the relaxed FPR gap (y=0) and TPR gap (y=1).

    ``temperature`` as for :func:`dp_penalty`.
    """
    q = sharpen(p, temperature)
    gaps = [group_gap(q[y == label], s[y == label]) for label in EO_LABELS]
    return torch.maximum(gaps[0], gaps[1])


def dp_difference(y_pred: Tensor, s: Tensor) -> float:
    """Largest gap in selection rate ``P(y_pred = 1 | group)`` between groups."""
    return float(group_gap((torch.as_tensor(y_pred) == 1).double(), torch.as_tensor(s)))


def eo_difference(y_true: Tensor, y_pred: Tensor, s: Tensor) -> float:
    """The larger of the between-group TPR gap and FPR gap of hard predictions."""
    y_true, s = torch.as_tensor(y_true), torch.as_tensor(s)
    positive = (torch.as_tensor(y_pred) == 1).double()
    return max(
        float(group_gap(positive[y_true == label], s[y_true == label])) for label in EO_LABELS
    )


def rate_deviations(values: Tensor, s: Tensor, n_groups: int, y: Tensor | None = None) -> Tensor:
    """Signed deviation of each group's mean from the overall mean.

    Demographic parity (``y`` None): ``mean(values | s=g) - mean(values)`` for
    each group ``g`` (shape ``(n_groups,)``). Equalized odds (``y`` given): the
    same within each label, ``mean(values | s=g, y=l) - mean(values | y=l)``
    (shape ``(2 * n_groups,)``, label-major). All deviations are 0 exactly
    when the constraint holds; a group absent from the batch contributes 0.
    These are the constraints of the Lagrangian form
    (``sum(multipliers * deviations)``), whose multipliers are raised by
    dual ascent on the hard-prediction deviations.
    """
    slices = [(values, s)] if y is None else [(values[y == lab], s[y == lab]) for lab in EO_LABELS]
    out = []
    for vals, groups in slices:
        if vals.numel() == 0:
            out.append(values.new_zeros(n_groups))
            continue
        sums = vals.new_zeros(n_groups).index_add(0, groups, vals)
        counts = torch.bincount(groups, minlength=n_groups).to(vals.dtype)
        present = counts > 0
        means = torch.where(present, sums / counts.clamp(min=1), vals.mean())
        out.append(torch.where(present, means - vals.mean(), means.new_zeros(())))
    return torch.cat(out)
