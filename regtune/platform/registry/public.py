"""``regtune.load``: a registered version as a plain torch module plus its feature schema."""

from __future__ import annotations

from torch import nn

from regtune.errors import SpecError
from regtune.platform.registry.location import registry_root
from regtune.platform.registry.version import load_version
from regtune.trainables.schema import FeatureSchema

__all__ = ["load"]

BAD_VERSION = "version={version!r} is not allowed; expected a positive integer or None (latest)"
PATH_WITH_VERSION = (
    "version={version!r} cannot be combined with a directory {path!r}; a directory is one version"
)


def load(
    name_or_path: str,
    version: int | None = None,
    *,
    storage: str | None = None,
) -> tuple[nn.Module, FeatureSchema]:
    """Load a registered model for use outside serving (notebooks, audits).

    Args:
        name_or_path: a model name (``"digits-ens"``), ``"name:3"``, or a
            version directory.
        version: the version of a named model (default: the latest).
        storage: the storage root holding the registry (default:
            ``$REGTUNE_STORAGE`` or ``~/regtune_runs``).

    Returns:
        ``(module, schema)``: ``module`` maps float32 features ``(n, d)`` to
        logits in eval mode (``softmax`` gives class probabilities; for an
        ensemble these are the mean member probabilities), and
        ``schema.transform(records)`` turns raw records into those features.

    Raises:
        SpecError: bad name or version, unknown model or version.
        CheckpointError: a damaged version (the damaged file is named).
    """
    ref = name_or_path
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SpecError(BAD_VERSION.format(version=version))
        if "/" in name_or_path or ":" in name_or_path:
            raise SpecError(PATH_WITH_VERSION.format(version=version, path=name_or_path))
        ref = f"{name_or_path}:{version}"
    loaded = load_version(ref, root=registry_root(storage))
    return loaded.module, loaded.schema
