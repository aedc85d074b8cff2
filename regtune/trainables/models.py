"""The three architectures a trial can train: logistic regression, MLP, small CNN.

Every model takes FLAT inputs ``(batch, n_features)`` with
``n_features == prod(input_shape)`` and returns logits ``(batch, n_classes)``.
Binary tasks use two logits too (softmax everywhere, class 1 is the positive
class), so losses, calibration and attacks need no binary special case.

The models are plain :class:`torch.nn.Sequential` stacks, so a ``state_dict``
restores into ``build_model`` with the same arguments.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from regtune.errors import SpecError
from regtune.trainables.config import ModelConfig

__all__ = [
    "CNN_CHANNELS",
    "CNN_KERNEL",
    "build_model",
    "model_device",
]

#: Output channels of the CNN's two conv layers.
CNN_CHANNELS: tuple[int, int] = (32, 64)
#: Square kernel size of both conv layers (padding keeps the spatial size).
CNN_KERNEL = 3

BAD_INPUT_SHAPE = "input_shape must be a non-empty tuple of positive ints; got {shape!r}"
BAD_N_CLASSES = "n_classes must be at least 2 (binary tasks use 2 logits); got {n}"
CNN_NEEDS_IMAGE = (
    "model.arch: 'cnn' needs image inputs of shape (channels, height, width) with "
    "height and width >= 2; got input_shape {shape!r}. Use 'mlp' or 'logreg' for "
    "tabular data."
)


def build_model(
    cfg: ModelConfig,
    *,
    input_shape: tuple[int, ...],
    n_classes: int,
    spectral_norm: bool = False,
) -> nn.Module:
    """Build the network ``cfg`` describes.

    Args:
        cfg: ``arch`` picks the network. ``logreg``: one Linear. ``mlp``:
            ``depth`` hidden layers of ``width`` units, each followed by ReLU
            and ``Dropout(cfg.dropout)``. ``cnn``: two 3x3 conv layers
            (32, 64 channels, ReLU), one 2x2 max-pool, ``Linear(width)`` +
            ReLU + dropout, then the output layer (``depth`` is ignored).
        input_shape: the shape of one example before flattening, e.g.
            ``(30,)`` for tabular data or ``(1, 8, 8)`` for digits.
        n_classes: number of logits (2 for binary tasks).
        spectral_norm: wrap every Linear/Conv weight with
            :func:`torch.nn.utils.parametrizations.spectral_norm` (one power
            iteration per training forward). For a conv this normalizes the
            kernel reshaped to ``(out, in*k*k)``, a standard proxy for the
            operator norm.

    Raises:
        SpecError: ``cnn`` on a non-image ``input_shape``, a malformed
            ``input_shape``, or fewer than 2 classes.
    """
    if (
        not isinstance(input_shape, tuple)
        or not input_shape
        or not all(isinstance(d, int) and d > 0 for d in input_shape)
    ):
        raise SpecError(BAD_INPUT_SHAPE.format(shape=input_shape))
    if n_classes < 2:
        raise SpecError(BAD_N_CLASSES.format(n=n_classes))
    n_features = math.prod(input_shape)

    model: nn.Sequential
    if cfg.arch == "logreg":
        model = nn.Sequential(nn.Linear(n_features, n_classes))
    elif cfg.arch == "mlp":
        layers: list[nn.Module] = []
        fan_in = n_features
        for _ in range(cfg.depth):
            layers += [nn.Linear(fan_in, cfg.width), nn.ReLU(), nn.Dropout(cfg.dropout)]
            fan_in = cfg.width
        layers.append(nn.Linear(fan_in, n_classes))
        model = nn.Sequential(*layers)
    else:
        model = _cnn(cfg, input_shape, n_classes)

    if spectral_norm:
        _wrap_spectral_norm(model)
    return model


def _cnn(cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> nn.Sequential:
    if len(input_shape) != 3 or input_shape[1] < 2 or input_shape[2] < 2:
        raise SpecError(CNN_NEEDS_IMAGE.format(shape=input_shape))
    channels, height, width = input_shape
    c1, c2 = CNN_CHANNELS
    pad = CNN_KERNEL // 2
    flat = c2 * (height // 2) * (width // 2)
    return nn.Sequential(
        nn.Unflatten(1, input_shape),
        nn.Conv2d(channels, c1, CNN_KERNEL, padding=pad),
        nn.ReLU(),
        nn.Conv2d(c1, c2, CNN_KERNEL, padding=pad),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(flat, cfg.width),
        nn.ReLU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.width, n_classes),
    )


def _wrap_spectral_norm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            _spectral_norm(module)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (CPU for an empty module)."""
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")
