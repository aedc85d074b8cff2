"""``regtune.load``: a registered version as a torch module, its feature schema and
its post-processing.

:func:`load` returns a :class:`LoadedModel`. It unpacks as ``(module, schema)``
(the plain network over feature tensors, for audits and other tools) and also
answers like the server does, post-processing included::

    model = regtune.load("adult")
    labels = model.predict(records)             # per-group thresholds applied
    probs = model.predict_proba(records)        # temperatures applied
    module, schema = model                      # the raw network and encoder

The sensitive group of each record is read from its sensitive attribute
(``schema.sensitive``), which need not be a model feature. With feature
tensors instead of records, pass the group codes yourself:
``model.probabilities(x, groups)`` and ``model.decisions(probs, groups)``,
codes indexing ``schema.sensitive_values`` (None or -1: unknown). Rows of an
unknown group get the fallback temperature and the arg-max decision (see
:mod:`regtune.platform.registry.postprocess`).

Records are read as the server reads them: group values and categories by
their canonical form (``1`` and ``1.0`` are one value, see
:mod:`regtune.trainables.schema`); a record without the sensitive attribute (or
holding None) is answered with the fallback, and one holding a value that is
not a group is refused (:class:`~regtune.trainables.schema.UnknownGroupError`,
a ``DataError``) when the version has post-processing or the attribute is not
a model feature, exactly where the server answers 422.

Probabilities that are not finite (NaN or infinite logits, e.g. weights that
diverged) are refused, as the server refuses them with a 500 "model fault":
:meth:`LoadedModel.probabilities`, ``predict_proba`` and ``predict`` raise
:class:`ModelOutputError` with the server's words, never an arg-max over NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from regtune.errors import RegtuneError, SpecError
from regtune.platform.registry.location import registry_root
from regtune.platform.registry.postprocess import PostProcessing, group_codes
from regtune.platform.registry.version import ModelVersion, load_version
from regtune.trainables.schema import FeatureSchema

__all__ = ["NON_FINITE", "LoadedModel", "ModelOutputError", "check_finite", "load"]

#: The refusal of non-finite probabilities, as ``regtune serve`` words it in its 500.
NON_FINITE = "model {ref} returned non-finite probabilities for {n} of {total} records"

BAD_VERSION = "version={version!r} is not allowed; expected a positive integer or None (latest)"
PATH_WITH_VERSION = (
    "version={version!r} cannot be combined with a directory {path!r}; a directory is one version"
)

Groups = Sequence[int | None] | np.ndarray | Tensor | None


class ModelOutputError(RegtuneError):
    """A model produced unusable output (NaN or infinite probabilities)."""


def check_finite(probs: np.ndarray, ref: str) -> np.ndarray:
    """``probs`` unchanged if every row is finite.

    Raises:
        ModelOutputError: naming model ``ref`` and how many rows are not.
    """
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        raise ModelOutputError(NON_FINITE.format(ref=ref, n=int(bad.sum()), total=len(probs)))
    return probs


class LoadedModel(tuple[nn.Module, FeatureSchema]):
    """A loaded version: ``(module, schema)`` plus the version's post-processing.

    Attributes:
        version: the verified :class:`~regtune.platform.registry.ModelVersion`.
    """

    version: ModelVersion

    def __new__(cls, version: ModelVersion) -> LoadedModel:
        """Wrap a loaded version."""
        self = super().__new__(cls, (version.module, version.schema))
        self.version = version
        return self

    @property
    def module(self) -> nn.Module:
        """Float32 features ``(n, d)`` -> logits (an ensemble: log mean probabilities)."""
        return self[0]

    @property
    def schema(self) -> FeatureSchema:
        """Turns raw records into the module's features (``schema.transform``)."""
        return self[1]

    @property
    def classes(self) -> list[str]:
        """Class labels in output order."""
        return list(self.version.classes)

    @property
    def postprocessing(self) -> PostProcessing | None:
        """Temperatures and thresholds applied by :meth:`probabilities` and :meth:`decisions`."""
        return self.version.postprocessing

    def groups(self, records: Sequence[Mapping[str, Any]]) -> list[int | None] | None:
        """Group codes of raw records (None where the sensitive attribute is absent,
        or holds null or an unseen category of a feature in a version without
        post-processing); None when the schema has no sensitive attribute.

        Raises:
            UnknownGroupError: a value that is not a group, where the server
                refuses it too (see the module docstring).
        """
        post = self.postprocessing
        return self.schema.record_groups(records, strict=post is not None and post.active)

    def probabilities(self, x: Tensor, groups: Groups = None) -> np.ndarray:
        """Class probabilities ``(n, C)`` (float64) of feature rows ``x``, each row's
        logits divided by its group's temperature when the version has any.

        Raises:
            ModelOutputError: a row is not finite (a broken model, not bad
                input; the server answers 500), naming how many.
        """
        post = self.postprocessing
        with torch.inference_mode():
            z = self.module(x)
            if post is not None and post.temperatures is not None:
                z = post.scale_logits(z, group_codes(groups, z.shape[0]))
            probs = torch.softmax(z, dim=1).double().cpu().numpy()
        return check_finite(probs, self.version.ref)

    def decisions(self, probs: np.ndarray, groups: Groups = None) -> np.ndarray:
        """Class ids (int64): per-group thresholds on ``probs[:, 1]`` where the
        version has them and the row's group is known, else the arg-max."""
        post = self.postprocessing
        if post is None or not post.decides:
            return probs.argmax(axis=1)
        return post.decide(probs, group_codes(groups, probs.shape[0]))

    def predict_proba(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """:meth:`probabilities` of raw records (groups read from the records).

        Raises:
            DataError: a record the schema cannot encode, or an unknown group
                (see :meth:`groups`).
            ModelOutputError: non-finite probabilities (see :meth:`probabilities`).
        """
        return self.probabilities(self.schema.transform(records), self.groups(records))

    def predict(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """The class label a server would answer for each raw record.

        Raises:
            DataError: a record the schema cannot encode, or an unknown group
                (see :meth:`groups`).
            ModelOutputError: non-finite probabilities (see :meth:`probabilities`).
        """
        groups = self.groups(records)
        ids = self.decisions(self.probabilities(self.schema.transform(records), groups), groups)
        return [self.version.classes[i] for i in ids.tolist()]


def load(
    name_or_path: str,
    version: int | None = None,
    *,
    storage: str | None = None,
) -> LoadedModel:
    """Load a registered model for use outside serving (notebooks, audits).

    Args:
        name_or_path: a model name (``"digits-ens"``), ``"name:3"``, or a
            version directory.
        version: the version of a named model (default: the latest).
        storage: the storage root holding the registry (default:
            ``$REGTUNE_STORAGE`` or ``~/regtune_runs``).

    Returns:
        A :class:`LoadedModel`: it unpacks as ``(module, schema)``, where
        ``module`` maps float32 features ``(n, d)`` to logits in eval mode
        (``softmax`` gives the raw class probabilities; for an ensemble the
        mean member probabilities) and ``schema.transform(records)`` turns raw
        records into those features; its ``predict``/``predict_proba``
        apply the version's temperatures and per-group thresholds as a server
        does.

    Raises:
        SpecError: bad name or version, unknown model or version.
        CheckpointError: a damaged version (the damaged file or field is named).
    """
    ref = name_or_path
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SpecError(BAD_VERSION.format(version=version))
        if "/" in name_or_path or ":" in name_or_path:
            raise SpecError(PATH_WITH_VERSION.format(version=version, path=name_or_path))
        ref = f"{name_or_path}:{version}"
    return LoadedModel(load_version(ref, root=registry_root(storage)))
