"""The torch module a version describes: one network, or an ensemble of several.

A version stores each member's architecture (the ``model`` section of its
training config and whether spectral norm was on) and its weights under the
key prefix ``members.<i>.``. One member is served as itself (logits out); an
ensemble returns the log of the mean member probabilities, so ``softmax`` of
its output is that mean, exactly as a single model's ``softmax`` is its
probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from regtune.errors import CheckpointError
from regtune.trainables.config import ModelConfig
from regtune.trainables.models import build_model

__all__ = [
    "EnsembleModule",
    "build_members",
    "build_version_module",
    "member_prefix",
    "split_members",
]

BAD_ARCH = "model version {dir}: meta.json 'architecture' is unusable ({error})"
BAD_WEIGHTS = (
    "model version {dir}: file weights.safetensors does not fit the architecture ({error})"
)


def member_prefix(index: int) -> str:
    """Key prefix of member ``index``'s tensors in ``weights.safetensors``."""
    return f"members.{index}."


class EnsembleModule(nn.Module):
    """Mean of member probabilities, returned as log-probabilities (valid logits)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``log(mean_i softmax(member_i(x)))``, shape ``(n, n_classes)``."""
        logps = torch.stack([torch.log_softmax(m(x), dim=1) for m in self.members])
        return torch.logsumexp(logps, dim=0) - math.log(len(self.members))


def split_members(
    tensors: Mapping[str, torch.Tensor], n_members: int
) -> list[dict[str, torch.Tensor]]:
    """Per-member state dicts from the flat ``members.<i>.<key>`` mapping."""
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(n_members)]
    for key, value in tensors.items():
        head, _, rest = key.partition(".")
        index, _, inner = rest.partition(".")
        if head != "members" or not index.isdigit() or int(index) >= n_members or not inner:
            raise KeyError(f"unexpected tensor {key!r}")
        out[int(index)][inner] = value
    return out


def _parsed(
    architecture: Mapping[str, Any],
) -> tuple[tuple[int, ...], int, list[tuple[ModelConfig, bool]]]:
    """The input shape, class count and each member's (model, spectral norm) of
    ``architecture``.

    Raises:
        KeyError, TypeError, ValueError: a field is missing or of the wrong type.
    """
    shape = tuple(int(d) for d in architecture["input_shape"])
    n_classes = int(architecture["n_classes"])
    specs = []
    for index, spec in enumerate(architecture["members"]):
        spectral = spec["spectral_norm"]
        if not isinstance(spectral, bool):
            raise TypeError(f"members.{index}.spectral_norm is {spectral!r}, not true or false")
        specs.append((ModelConfig.model_validate(spec["model"]), spectral))
    if not specs:
        raise ValueError("no members")
    return shape, n_classes, specs


def build_members(
    architecture: Mapping[str, Any], states: Sequence[Mapping[str, torch.Tensor]] | None = None
) -> list[nn.Module]:
    """Rebuild every member network, loading ``states`` when given.

    Raises:
        KeyError, TypeError, ValueError: a malformed architecture.
        RuntimeError: ``states`` do not fit it.
    """
    shape, n_classes, specs = _parsed(architecture)
    members = []
    for index, (config, spectral) in enumerate(specs):
        model = build_model(config, input_shape=shape, n_classes=n_classes, spectral_norm=spectral)
        if states is not None:
            model.load_state_dict(dict(states[index]))
        members.append(model)
    return members


def build_version_module(
    architecture: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], *, source: str
) -> nn.Module:
    """The eval-mode, gradient-free module of a version.

    Raises:
        CheckpointError: naming ``source`` when the architecture is malformed
            (:data:`BAD_ARCH`: a meta.json field) or the weights do not fit it
            (:data:`BAD_WEIGHTS`: the weights file).
    """
    try:
        n_members = len(_parsed(architecture)[2])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(BAD_ARCH.format(dir=source, error=exc)) from exc
    try:
        states = split_members(tensors, n_members)
        members = build_members(architecture, states)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(BAD_WEIGHTS.format(dir=source, error=exc)) from exc
    except (ValueError, TypeError) as exc:
        raise CheckpointError(BAD_ARCH.format(dir=source, error=exc)) from exc
    module = members[0] if n_members == 1 else EnsembleModule(members)
    module.eval()
    module.requires_grad_(False)
    return module
