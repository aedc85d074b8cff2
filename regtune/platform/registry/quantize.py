"""Int8 dynamic quantization of a version (``torch.ao.quantization.quantize_dynamic``).

Every ``nn.Linear`` becomes an int8-weight linear layer that quantizes its
activations on the fly; convolutions stay float. The quantized version stores
each quantized layer's int8 weight, scale and zero point and float bias in
``weights.safetensors`` (``<layer>.weight.int8``, ``.weight.scale``,
``.weight.zero_point``, ``.bias``) next to the float tensors of the other
layers, and records in ``meta.json`` ``quantization``: the scheme, the layers,
the float and int8 test accuracy and the float and int8 weight bytes.
Loading rebuilds the float skeleton, quantizes it and sets the stored int8
weights, so the served module is bitwise the one that was measured.

Post-processing: int8 arithmetic moves the probabilities a little, so the
float parent's temperatures and thresholds are refitted for the int8 module
on the validation split with the parent's settings (see :mod:`.postfit`),
and the recorded metrics are the post-processed ones.

Gates: the copy is checked against the gates its parent's lineage records
(``lineage.gates``), on its own metrics. Registered as the parent's model (so
its latest version), it must meet every one, else nothing is written; under
another name (``--as``) its lineage lists only the gates it meets and the
others under ``gates_not_met`` (:func:`~.promote.inherited_gates`).

Spectral-norm parametrizations are folded into plain weights first (they are
fixed at inference). torch marks its eager quantization API deprecated in
favour of torchao; the calls are wrapped so the warning does not reach users.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from regtune.errors import CheckpointError
from regtune.platform.registry.evaluation import evaluate_module
from regtune.platform.registry.modules import EnsembleModule, build_members
from regtune.platform.registry.postprocess import META_KEY
from regtune.platform.registry.version import (
    ModelVersion,
    check_same_data,
    creation_record,
    load_version,
    write_version,
)

__all__ = ["SCHEME", "build_quantized_module", "quantize_module", "quantize_version"]

#: The one scheme supported: int8 weights, dynamically quantized activations.
SCHEME = "int8-dynamic"

ALREADY = "{ref} is already quantized ({scheme}); quantize its float parent instead"
BAD_QUANT = "model version {dir}: quantized weights do not fit the architecture ({error})"


def _dynamic_linear() -> type[nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear

    return Linear


def _fold_parametrizations(module: nn.Module) -> nn.Module:
    for sub in module.modules():
        if parametrize.is_parametrized(sub):
            names: list[str] = list(sub.parametrizations.keys())  # type: ignore[union-attr, operator]
            for name in names:
                parametrize.remove_parametrizations(sub, name, leave_parametrized=True)
    return module


def quantize_module(module: nn.Module) -> nn.Module:
    """An int8 dynamically quantized copy of a float eval-mode ``module`` (CPU)."""
    base = _fold_parametrizations(copy.deepcopy(module).to("cpu").eval())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(base, {nn.Linear}, dtype=torch.qint8)


def _quantized_tensors(qmodule: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    linear = _dynamic_linear()
    tensors: dict[str, torch.Tensor] = {}
    layers = []
    for path, sub in qmodule.named_modules():
        if isinstance(sub, linear):
            weight, bias = sub._weight_bias()  # type: ignore[operator]
            tensors[f"{path}.weight.int8"] = weight.int_repr().contiguous()
            tensors[f"{path}.weight.scale"] = torch.tensor(weight.q_scale(), dtype=torch.float64)
            tensors[f"{path}.weight.zero_point"] = torch.tensor(weight.q_zero_point())
            if bias is not None:
                tensors[f"{path}.bias"] = bias.detach().contiguous().clone()
            layers.append(path)
    for key, value in qmodule.state_dict().items():
        if isinstance(value, torch.Tensor) and not value.is_quantized:
            owner = key.rsplit(".", 1)[0]
            if owner not in layers and not key.endswith(("scale", "zero_point")):
                tensors[key] = value.detach().contiguous().clone()
    return tensors, layers


def _float_skeleton(architecture: Mapping[str, Any]) -> nn.Module:
    plain = {
        **architecture,
        "members": [{**m, "spectral_norm": False} for m in architecture["members"]],
    }
    members = build_members(plain)
    return members[0] if len(members) == 1 else EnsembleModule(members)


def build_quantized_module(
    architecture: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    quantization: Mapping[str, Any],
    *,
    source: str,
) -> nn.Module:
    """Rebuild a quantized version's module from its stored tensors.

    Raises:
        CheckpointError: naming ``source`` when tensors and architecture disagree.
    """
    try:
        if quantization.get("scheme") != SCHEME:
            raise ValueError(f"unknown scheme {quantization.get('scheme')!r}")
        layers = list(quantization["layers"])
        quantized_keys = {
            f"{path}.{k}"
            for path in layers
            for k in ("weight.int8", "weight.scale", "weight.zero_point", "bias")
        }
        skeleton = _float_skeleton(architecture)
        # Float layers (convolutions) load before quantizing; linears get int8 weights after.
        rest = {k: v for k, v in tensors.items() if k not in quantized_keys}
        missing, unexpected = skeleton.load_state_dict(rest, strict=False)
        float_missing = [k for k in missing if k.rsplit(".", 1)[0] not in layers]
        if unexpected or float_missing:
            raise ValueError(f"missing {float_missing}, unexpected {list(unexpected)}")
        qmodule = quantize_module(skeleton)
        quantized = dict(qmodule.named_modules())
        for path in layers:
            weight = torch._make_per_tensor_quantized_tensor(
                tensors[f"{path}.weight.int8"],
                float(tensors[f"{path}.weight.scale"]),
                int(tensors[f"{path}.weight.zero_point"]),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                quantized[path].set_weight_bias(weight, tensors.get(f"{path}.bias"))
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(BAD_QUANT.format(dir=source, error=exc)) from exc
    qmodule.eval()
    qmodule.requires_grad_(False)
    return qmodule


def _weight_bytes(tensors: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def quantize_version(ref: str, *, name: str | None = None, root: str | None = None) -> ModelVersion:
    """Quantize version ``ref`` and register the result as the next version of ``name``
    (default: the same model), with float and int8 accuracy and size recorded.

    Raises:
        SpecError: a bad reference or ``name`` (checked before any work).
        GatesNotMet: registered as the parent's model, the copy misses a gate
            of the parent's lineage (see the module docstring); nothing written.
        CheckpointError: a damaged or already quantized version, or data that
            changed since the version was trained.
    """
    from regtune.platform.registry.location import check_name
    from regtune.platform.registry.promote import inherited_gates, parent_gates
    from regtune.trainables.data import load_dataset

    if name is not None:
        check_name(name)
    source = load_version(ref, root=root)
    parent_gates(source)  # a malformed lineage.gates is refused before the work
    if source.quantized:
        raise CheckpointError(
            ALREADY.format(ref=source.ref, scheme=source.meta["quantization"]["scheme"])
        )
    dataset = load_dataset(source.configs[0].dataset)
    check_same_data(
        f"version {source.ref} ({source.path})", source.meta["dataset"]["fingerprint"], dataset
    )
    qmodule = quantize_module(source.module)
    tensors, layers = _quantized_tensors(qmodule)
    post = None
    if source.postprocessing is not None:
        from regtune.platform.registry.postfit import fit_postprocessing

        post = fit_postprocessing(
            qmodule,
            dataset,
            source.postprocessing.settings,
            provenance={"settings_from": source.ref},
        )
    metrics = evaluate_module(qmodule, dataset, post=post)
    float_bytes = int(source.meta["files"]["weights.safetensors"]["bytes"])
    for key in ("n_params", "sparsity"):
        metrics[key] = float(source.metrics.get(key, metrics[key]))
    metrics["size_bytes"] = float(_weight_bytes(tensors))
    meta = dict(source.meta)
    for key in ("files", "meta_sha256", "version"):
        meta.pop(key, None)
    meta.update(creation_record())  # written now, by this code (not the parent's)
    meta["metrics"] = metrics
    meta[META_KEY] = None if post is None else post.to_meta()
    meta["quantization"] = {
        "scheme": SCHEME,
        "layers": layers,
        "float_test_acc": source.metrics.get("test_acc"),
        "int8_test_acc": metrics["test_acc"],
        "float_size_bytes": float(source.metrics.get("size_bytes", 0.0)),
        "int8_size_bytes": metrics["size_bytes"],
        "float_file_bytes": float_bytes,
    }
    target = name or source.name
    gates = inherited_gates(source, metrics, name=target, what=f"the int8 copy of {source.ref}")
    lineage = {
        k: v for k, v in dict(source.meta.get("lineage", {})).items() if k != "gates_not_met"
    }
    meta["lineage"] = {**lineage, **gates, "quantized_from": source.ref}
    return write_version(target, tensors, meta, root=root)
