"""How raw records become the float32 tensors a model was trained on.

A :class:`FeatureSchema` is fitted once on the training split and stored next
to every model, so serving turns ``{"age": 39, "workclass": "State-gov", ...}``
into exactly the row training used. The encoding, in column order:

* numeric features first, each ``(value - center) / scale`` (train mean and
  population std; a constant column gets scale 1; images use a fixed scale),
  computed in float64 and cast to float32;
* then one one-hot block per categorical feature, over its train-split
  vocabulary. Values are compared by their string form (``str(value)``), and a
  value not in the vocabulary encodes as an all-zero block: an unseen category
  is treated as "none of the known ones" rather than an error.

Records may carry extra keys (the label, ids, ...); they are ignored.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from regtune.errors import DataError

__all__ = ["CategoricalFeature", "FeatureSchema", "Label", "NumericFeature"]

Label = str | int | float | bool

SCHEMA_VERSION = 1

NOT_A_MAPPING = "record {index}: is a {kind}; expected a mapping of feature name to raw value"
MISSING_KEY = "record {index}: missing feature {feature!r}; expected {expected}"
NOT_NUMERIC = "record {index}: feature {feature!r} is {value!r}; expected a finite number"
NOT_IN_RANGE = (
    "record {index}: feature {feature!r} is {value!r}; expected a finite number whose "
    "scaled value (x - {center:g}) / {scale:g} fits float32 (the model's input)"
)
MISSING_CATEGORY = (
    "record {index}: feature {feature!r} is {value!r}; expected a category such as "
    "{examples} (unseen categories encode as all zeros)"
)
UNKNOWN_GROUP = (
    "record {index}: sensitive attribute {feature!r} is {value!r}; expected one of {values}"
)
NO_SENSITIVE = "this schema has no sensitive attribute, so records have no group codes"
BAD_SCHEMA = "{source}: not a regtune feature schema ({error})"


@dataclass(frozen=True)
class NumericFeature:
    """A numeric input, encoded as ``(value - center) / scale``."""

    name: str
    center: float
    scale: float


@dataclass(frozen=True)
class CategoricalFeature:
    """A categorical input, one-hot encoded over ``vocabulary`` (string forms)."""

    name: str
    vocabulary: tuple[str, ...]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class FeatureSchema:
    """Everything needed to encode raw records; see the module docstring.

    ``classes[i]`` is the raw label value of class id ``i``; ``sensitive_values[g]``
    the string form of group code ``g``.
    """

    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]
    label: str
    classes: tuple[Label, ...]
    sensitive: str | None = None
    sensitive_values: tuple[str, ...] = ()
    image_shape: tuple[int, ...] | None = None
    bounds: tuple[float, float] | None = None

    @classmethod
    def fit(
        cls,
        train: pd.DataFrame,
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        label: str,
        classes: Sequence[Label],
        sensitive: str | None = None,
        sensitive_values: Sequence[str] = (),
        image_shape: tuple[int, ...] | None = None,
        fixed_scale: tuple[float, float] | None = None,
        bounds: tuple[float, float] | None = None,
    ) -> FeatureSchema:
        """Fit centers, scales and vocabularies on the training rows ``train``.

        ``fixed_scale=(center, scale)`` skips fitting and uses those for every
        numeric feature (images: pixels divided by their maximum).
        """
        nums = []
        for name in numeric:
            if fixed_scale is not None:
                center, scale = fixed_scale
            else:
                values = train[name].to_numpy(dtype=np.float64)
                center, scale = float(values.mean()), float(values.std())
                scale = scale if scale > 0.0 else 1.0
            nums.append(NumericFeature(name, float(center), float(scale)))
        cats = [
            CategoricalFeature(name, tuple(sorted({str(v) for v in train[name].tolist()})))
            for name in categorical
        ]
        return cls(
            numeric=tuple(nums),
            categorical=tuple(cats),
            label=label,
            classes=tuple(classes),
            sensitive=sensitive,
            sensitive_values=tuple(sensitive_values),
            image_shape=image_shape,
            bounds=bounds,
        )

    # -- shape ---------------------------------------------------------------

    @property
    def n_features(self) -> int:
        """Width of an encoded row."""
        return len(self.numeric) + sum(len(c.vocabulary) for c in self.categorical)

    def input_names(self) -> list[str]:
        """The raw record keys the encoding reads, numeric first."""
        return [f.name for f in self.numeric] + [c.name for c in self.categorical]

    def feature_names(self) -> list[str]:
        """Names of the encoded columns; one-hot columns are ``"name=value"``."""
        names = [f.name for f in self.numeric]
        for cat in self.categorical:
            names.extend(f"{cat.name}={v}" for v in cat.vocabulary)
        return names

    def perturb_mask(self) -> torch.Tensor:
        """Bool mask of encoded columns an attack may change: the numeric ones.

        One-hot columns are excluded because a fractional category is not a
        valid input; for images every pixel is numeric, so all are perturbable.
        """
        mask = torch.zeros(self.n_features, dtype=torch.bool)
        mask[: len(self.numeric)] = True
        return mask

    # -- encoding ------------------------------------------------------------

    def encode_table(self, table: pd.DataFrame) -> torch.Tensor:
        """Encode a validated table (one raw record per row) to float32 ``(n, n_features)``."""
        columns = {name: table[name].tolist() for name in self.input_names()}
        return self._encode(columns, len(table))

    def transform(self, records: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """Encode raw records exactly as training did.

        Raises:
            DataError: naming the record index, the feature and what is expected,
                for a non-mapping record, a missing key, a non-numeric or
                non-finite numeric value (or one whose scaled value overflows
                float32), or a missing categorical value.
        """
        numeric_names = {f.name for f in self.numeric}
        examples = {c.name: list(c.vocabulary[:3]) for c in self.categorical}
        columns: dict[str, list[Any]] = {name: [] for name in self.input_names()}
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise DataError(NOT_A_MAPPING.format(index=index, kind=type(record).__name__))
            for name, values in columns.items():
                if name not in record:
                    expected = "a finite number" if name in numeric_names else "a category"
                    raise DataError(
                        MISSING_KEY.format(index=index, feature=name, expected=expected)
                    )
                value = record[name]
                if name in numeric_names:
                    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
                    if not ok or not math.isfinite(float(value)):
                        raise DataError(NOT_NUMERIC.format(index=index, feature=name, value=value))
                elif _is_missing(value):
                    raise DataError(
                        MISSING_CATEGORY.format(
                            index=index, feature=name, value=value, examples=examples[name]
                        )
                    )
                values.append(value)
        out = self._encode(columns, len(records))
        # A finite value far enough out overflows the float32 input: refused, as
        # the server refuses it, rather than reaching the model as infinity.
        bad = ~torch.isfinite(out[:, : len(self.numeric)])
        if bad.any():
            index, j = (int(k) for k in bad.nonzero()[0])
            num = self.numeric[j]
            raise DataError(
                NOT_IN_RANGE.format(
                    index=index,
                    feature=num.name,
                    value=columns[num.name][index],
                    center=num.center,
                    scale=num.scale,
                )
            )
        return out

    def _encode(self, columns: Mapping[str, list[Any]], n: int) -> torch.Tensor:
        # The single code path for tables and records: serving equals training bitwise.
        out = np.zeros((n, self.n_features), dtype=np.float32)
        for j, num in enumerate(self.numeric):
            raw = np.asarray(columns[num.name], dtype=np.float64).reshape(n)
            with np.errstate(over="ignore", invalid="ignore"):  # transform refuses overflow
                out[:, j] = (raw - num.center) / num.scale
        offset = len(self.numeric)
        for cat in self.categorical:
            codes = pd.Index(cat.vocabulary).get_indexer([str(v) for v in columns[cat.name]])
            rows = np.nonzero(codes >= 0)[0]
            out[rows, offset + codes[rows]] = 1.0
            offset += len(cat.vocabulary)
        return torch.from_numpy(out)

    def sensitive_codes(self, records: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """Group codes (int64, index into ``sensitive_values``) of raw records.

        Raises:
            DataError: if the schema has no sensitive attribute, or a record lacks
                it or holds a value outside ``sensitive_values``.
        """
        if self.sensitive is None:
            raise DataError(NO_SENSITIVE)
        lookup = {v: g for g, v in enumerate(self.sensitive_values)}
        codes = []
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise DataError(NOT_A_MAPPING.format(index=index, kind=type(record).__name__))
            if self.sensitive not in record:
                raise DataError(
                    MISSING_KEY.format(
                        index=index,
                        feature=self.sensitive,
                        expected=f"one of {list(self.sensitive_values)}",
                    )
                )
            value = record[self.sensitive]
            code = None if _is_missing(value) else lookup.get(str(value))
            if code is None:
                raise DataError(
                    UNKNOWN_GROUP.format(
                        index=index,
                        feature=self.sensitive,
                        value=value,
                        values=list(self.sensitive_values),
                    )
                )
            codes.append(code)
        return torch.tensor(codes, dtype=torch.int64)

    # -- persistence ---------------------------------------------------------

    def to_json(self) -> str:
        """Serialize to JSON; floats round-trip exactly, so encodings stay bitwise equal."""
        payload = {
            "version": SCHEMA_VERSION,
            "numeric": [[f.name, f.center, f.scale] for f in self.numeric],
            "categorical": [[c.name, list(c.vocabulary)] for c in self.categorical],
            "label": self.label,
            "classes": list(self.classes),
            "sensitive": self.sensitive,
            "sensitive_values": list(self.sensitive_values),
            "image_shape": None if self.image_shape is None else list(self.image_shape),
            "bounds": None if self.bounds is None else list(self.bounds),
        }
        return json.dumps(payload, indent=1)

    @classmethod
    def from_json(cls, text: str, *, source: str = "<json>") -> FeatureSchema:
        """Inverse of :meth:`to_json`.

        Raises:
            DataError: naming ``source`` if the text is not a schema of this version.
        """
        try:
            raw = json.loads(text)
            if raw["version"] != SCHEMA_VERSION:
                raise ValueError(f"version {raw['version']!r}, expected {SCHEMA_VERSION}")
            shape, bounds = raw["image_shape"], raw["bounds"]
            return cls(
                numeric=tuple(NumericFeature(n, float(c), float(s)) for n, c, s in raw["numeric"]),
                categorical=tuple(CategoricalFeature(n, tuple(v)) for n, v in raw["categorical"]),
                label=raw["label"],
                classes=tuple(raw["classes"]),
                sensitive=raw["sensitive"],
                sensitive_values=tuple(raw["sensitive_values"]),
                image_shape=None if shape is None else tuple(int(d) for d in shape),
                bounds=None if bounds is None else (float(bounds[0]), float(bounds[1])),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(BAD_SCHEMA.format(source=source, error=exc)) from exc

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path``."""
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> FeatureSchema:
        """Read a schema written by :meth:`save`.

        Raises:
            DataError: if the file is missing or is not a schema.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(BAD_SCHEMA.format(source=path, error=exc)) from exc
        return cls.from_json(text, source=str(path))
