"""From validated raw records to answers, for one loaded model version.

:class:`ServedModel` wraps a registry :class:`~regtune.platform.registry.ModelVersion`:
records are encoded with the version's own feature schema (the training
code path, so served rows equal training rows bitwise), the module runs under
``torch.inference_mode`` and its logits become probabilities with a softmax
(for an ensemble the module returns the log of the mean member
probabilities, so the softmax gives that mean back). Each answer names the
decided class and every class's probability.

A version with post-processing (``version.postprocessing``, see
:mod:`regtune.platform.registry.postprocess`) is served as it was scored:
:meth:`ServedModel.probabilities` divides the module output by the
temperature of each row's sensitive group before the softmax, and
:meth:`ServedModel.answers` decides by the per-group thresholds on the
positive-class probability. Both take the rows' group codes
(:meth:`ServedModel.groups`); a row whose group is unknown (None, or
``groups`` not given) gets the version's fallback temperature and the
arg-max decision. Without post-processing ``groups`` changes nothing.

Group values and categories are matched by their canonical form
(:func:`~regtune.trainables.schema.canonical_value`: ``1`` and ``1.0`` are one
value). A record whose sensitive attribute holds a value that is not one of the
groups is refused with a 422 when the version has post-processing (its answer
would otherwise silently drop the per-group thresholds) or when the attribute
is not a model feature; ``regtune.load().predict()`` applies the same rule
(:meth:`~regtune.trainables.schema.FeatureSchema.record_groups`). A record
without the attribute (or holding null) is answered with the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from regtune.platform.registry.postprocess import group_codes
from regtune.platform.registry.public import ModelOutputError, check_finite
from regtune.serve.protocol import LEAVE_OUT, RequestError
from regtune.trainables.schema import FeatureSchema, UnknownGroupError, ValueIndex

if TYPE_CHECKING:
    from regtune.platform.registry import ModelVersion

__all__ = ["ModelOutputError", "RecordEncoder", "ServedModel", "set_torch_threads"]

UNKNOWN_GROUP = (
    "{field} is {value!r}, not one of the groups this version's answers depend on; "
    "expected {allowed}"
)


def set_torch_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (None: leave torch's default).

    One thread is the right setting for small models under concurrent load:
    extra threads only spin against the other requests' work.
    """
    if threads is not None:
        torch.set_num_threads(threads)


class RecordEncoder:
    """``FeatureSchema.transform`` for records already validated, vectorized.

    The schema re-checks every value in Python; after :class:`RecordValidator`
    that is redundant, and at serving rates it costs more than the model. The
    arithmetic is the schema's own: ``(value - center) / scale`` in float64 per
    numeric column, cast to float32, and a one-hot block per categorical over
    canonical values (unseen: all zeros), so rows equal training rows bitwise.
    """

    def __init__(self, schema: FeatureSchema) -> None:
        self.numeric = [f.name for f in schema.numeric]
        self.center = np.array([f.center for f in schema.numeric], dtype=np.float64)
        self.scale = np.array([f.scale for f in schema.numeric], dtype=np.float64)
        self.width = schema.n_features
        self.blocks: list[tuple[str, int, ValueIndex]] = []
        offset = len(self.numeric)
        for cat in schema.categorical:
            self.blocks.append((cat.name, offset, schema.value_index(cat.name)))
            offset += len(cat.vocabulary)

    def __call__(self, records: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """Float32 ``(n, width)`` rows of validated raw records."""
        n = len(records)
        out = np.zeros((n, self.width), dtype=np.float32)
        if self.numeric:
            names = self.numeric
            raw = np.array([[r[k] for k in names] for r in records], dtype=np.float64)
            # The validator refuses values whose scaled form overflows float32; a
            # canary or shadow with another scale may still see one, as infinity.
            with np.errstate(over="ignore", invalid="ignore"):
                out[:, : len(names)] = (raw - self.center) / self.scale
        for name, offset, index in self.blocks:
            exact = index.exact
            for i, record in enumerate(records):
                value = record[name]
                j = exact.get(value) if type(value) is str else None
                if j is None:
                    j = index.code(value)
                if j is not None:
                    out[i, offset + j] = 1.0
        return torch.from_numpy(out)


class ServedModel:
    """One version ready to answer; see the module docstring."""

    def __init__(self, version: ModelVersion) -> None:
        self.version = version
        self.name = version.name
        self.number = int(version.version)
        self.classes = [str(c) for c in version.classes]
        self.schema = version.schema
        self.module = version.module.eval()
        self._encode = RecordEncoder(self.schema)
        post = version.postprocessing
        #: The version's post-processing when it changes anything, else None.
        self.post = post if post is not None and post.active else None

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.number}"

    def encode(self, records: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """Float32 ``(n, n_features)`` rows of validated records (see :class:`RecordEncoder`)."""
        return self._encode(records)

    def probabilities(
        self, x: torch.Tensor, groups: Sequence[int | None] | None = None
    ) -> np.ndarray:
        """Class probabilities ``(n, C)`` as float64, temperature-scaled by
        each row's group when the version has temperatures.

        Args:
            x: encoded rows (:meth:`encode`).
            groups: the rows' group codes (:meth:`groups`); None, or a None
                entry, means unknown (the fallback temperature applies).

        Raises:
            ModelOutputError: if any row is not finite (a broken model, not bad input).
        """
        return self.check_finite(self.unchecked_probabilities(x, groups))

    def unchecked_probabilities(
        self, x: torch.Tensor, groups: Sequence[int | None] | None = None
    ) -> np.ndarray:
        """:meth:`probabilities` without the finiteness check (a batch checks each
        request's rows on their own, see :meth:`check_finite`)."""
        with torch.inference_mode():
            z = self.module(x)
            if self.post is not None and self.post.temperatures is not None:
                z = self.post.scale_logits(z, group_codes(groups, z.shape[0]))
            return torch.softmax(z, dim=1).double().numpy()

    def check_finite(self, probs: np.ndarray) -> np.ndarray:
        """``probs`` unchanged if every row is finite.

        Raises:
            ModelOutputError: naming how many rows are not.
        """
        return check_finite(probs, self.ref)

    def predict(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """:meth:`probabilities` of raw records (the in-process path, no batching)."""
        return self.probabilities(self.encode(records), self.groups(records))

    def decisions(
        self, probs: np.ndarray, groups: Sequence[int | None] | None = None
    ) -> np.ndarray:
        """Class ids (int64) of the rows: by the version's per-group thresholds
        for rows of a known group, else the most probable class."""
        if self.post is None or not self.post.decides:
            return probs.argmax(axis=1)
        return self.post.decide(probs, group_codes(groups, probs.shape[0]))

    def labels(
        self,
        probs: np.ndarray,
        groups: Sequence[int | None] | None = None,
        names: Sequence[str] | None = None,
    ) -> list[str]:
        """The decided class of each row (see :meth:`decisions`), named by ``names``
        (class id order; default: this version's classes)."""
        classes = self.classes if names is None else names
        return [classes[i] for i in self.decisions(probs, groups).tolist()]

    def answers(
        self,
        probs: np.ndarray,
        groups: Sequence[int | None] | None = None,
        names: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """KServe v1 ``predictions`` entries: ``{"label", "probabilities"}`` per row;
        the label is the decided class (see :meth:`decisions`); classes named by
        ``names`` (class id order; default: this version's classes)."""
        classes = self.classes if names is None else names
        return [
            {"label": classes[i], "probabilities": dict(zip(classes, row, strict=True))}
            for i, row in zip(self.decisions(probs, groups).tolist(), probs.tolist(), strict=True)
        ]

    def groups(self, records: Sequence[Mapping[str, Any]]) -> list[int | None] | None:
        """Sensitive-group codes of records; see the module docstring. None where
        the attribute is absent, and where it holds null or another value that is
        not a group of a version without post-processing whose attribute is a
        model feature (an unseen category); None for all without a sensitive
        attribute.

        Raises:
            RequestError: 422 naming ``instances[i].<attribute>`` for a value that is
                not one of the groups (null included), when the version has
                post-processing or the attribute is not a model feature.
        """
        try:
            return self.schema.record_groups(records, strict=self.post is not None)
        except UnknownGroupError as exc:
            field = f"instances[{exc.index}].{exc.feature}"
            allowed = f"one of {exc.groups}"
            optional = exc.feature not in self.schema.input_names()
            raise RequestError(
                UNKNOWN_GROUP.format(field=field, value=exc.value, allowed=allowed)
                + (LEAVE_OUT if optional else ""),
                status=422,
                field=field,
                allowed=allowed,
            ) from None
