"""The model registry: self-describing versions, gated promotion, distillation.

A version is ``weights.safetensors`` + ``meta.json`` in
``<storage>/registry/<name>/v<N>/`` (see :mod:`.version`). Reading one needs
torch and safetensors only, never Ray Tune or the training loop::

    from regtune.platform.registry import load_version
    mv = load_version("digits-ens")          # latest; "digits-ens:2" or a directory
    probs = mv.module(mv.schema.transform(records)).softmax(dim=1)   # raw, before
    # the version's temperatures/thresholds (mv.postprocessing): regtune.load applies them
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from regtune._lazy import lazy_exports as _lazy_exports
from regtune.platform.registry.location import (
    list_models,
    list_versions,
    parse_ref,
    registry_root,
    storage_root,
)

if TYPE_CHECKING:
    from regtune.platform.registry.modules import EnsembleModule
    from regtune.platform.registry.postprocess import PostProcessing
    from regtune.platform.registry.version import (
        Member,
        ModelVersion,
        build_module,
        load_version,
        save_version,
    )

#: Names whose modules import torch: loaded on first use, so a command that only
#: looks a name up (``regtune models list``, a typo'd ``regtune serve NAME``)
#: answers without importing torch.
_LAZY = {
    "EnsembleModule": "modules",
    "PostProcessing": "postprocess",
    "Member": "version",
    "ModelVersion": "version",
    "build_module": "version",
    "load_version": "version",
    "save_version": "version",
}


__all__ = [
    "EnsembleModule",
    "Member",
    "ModelVersion",
    "PostProcessing",
    "build_module",
    "list_models",
    "list_versions",
    "load_version",
    "parse_ref",
    "registry_root",
    "save_version",
    "storage_root",
]

__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, globals())
