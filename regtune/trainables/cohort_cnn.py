"""The forward pass of K stacked ``cnn`` members (grouped convolutions).

Pure torch, no state. The solo model (:func:`regtune.trainables.models.build_model`,
``arch: cnn``) is conv 3x3 -> ReLU -> conv 3x3 -> ReLU -> max-pool 2 ->
flatten -> Linear(width) -> ReLU -> dropout -> Linear(classes). K members,
each on its own batch, run as ONE network: their images are stacked along
the channel axis, ``(B, K*C, H, W)``, and each conv is one ``conv2d`` with
``groups=K`` over the members' kernels stacked along the output channels,
so member k's channels only ever see member k's kernels (a grouped
convolution computes exactly the K separate convolutions). The two Linear
layers are ``baddbmm`` over ``(K, out, in)`` views, as for an MLP.

:class:`~regtune.trainables.cohort_fused.FusedCohort` calls
:func:`cnn_forward` for ``cnn`` members; everything else (per-member
random streams, penalties, the fused optimizer step, checkpoints) is
shared with MLP members.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from regtune.trainables.models import CNN_KERNEL

__all__ = ["CNN_DROPOUT_LAYER", "cnn_forward"]

#: Index (in the ``(weight, bias)`` layer list) of the Linear whose output
#: the solo CNN's one dropout acts on.
CNN_DROPOUT_LAYER = 2


def cnn_forward(
    layers: list[tuple[Tensor, Tensor]],
    x: Tensor,
    input_shape: tuple[int, ...],
    masks: list[Tensor | None] | None,
) -> Tensor:
    """Logits ``(K, B, classes)`` of K CNN members, member k on ``x[k]``.

    Args:
        layers: per layer, the members' ``(weight, bias)`` stacked on a
            leading K axis: conv1 ``(K, c1, C, 3, 3)``, conv2 ``(K, c2, c1, 3, 3)``,
            the hidden Linear ``(K, width, flat)`` and the output Linear.
        x: flat inputs ``(K, B, C*H*W)``.
        input_shape: ``(C, H, W)`` of one example.
        masks: the dropout multipliers ``(K, B, width)`` for the hidden
            Linear's output (one entry), or None (eval mode / no dropout).
    """
    (w1, b1), (w2, b2), (w3, b3), (w4, b4) = layers
    k, batch, _ = x.shape
    channels, height, width = input_shape
    pad = CNN_KERNEL // 2
    # (K, B, C*H*W) -> (B, K*C, H, W): member k owns channels k*C .. k*C+C-1.
    h = x.reshape(k, batch, channels, height, width).transpose(0, 1)
    h = h.reshape(batch, k * channels, height, width)
    h = F.conv2d(h, w1.reshape(-1, *w1.shape[2:]), b1.reshape(-1), padding=pad, groups=k)
    h = torch.relu(h)
    h = F.conv2d(h, w2.reshape(-1, *w2.shape[2:]), b2.reshape(-1), padding=pad, groups=k)
    h = F.max_pool2d(torch.relu(h), 2)
    # (B, K*c2, H/2, W/2) -> (K, B, c2*H/2*W/2): each member's solo flatten order.
    h = h.reshape(batch, k, -1).transpose(0, 1)
    h = torch.relu(torch.baddbmm(b3.unsqueeze(1), h, w3.transpose(1, 2)))
    mask = masks[0] if masks is not None else None
    if mask is not None:
        h = h * mask
    return torch.baddbmm(b4.unsqueeze(1), h, w4.transpose(1, 2))
