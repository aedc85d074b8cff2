"""How raw records become the float32 tensors a model was trained on.

A :class:`FeatureSchema` is fitted once on the training split and stored next
to every model, so serving turns ``{"age": 39, "workclass": "State-gov", ...}``
into exactly the row training used. The encoding, in column order:

* numeric features first, each ``(value - center) / scale`` (train mean and
  population std; a constant column gets scale 1; images use a fixed scale),
  computed in float64 and cast to float32;
* then one one-hot block per categorical feature, over its train-split
  vocabulary. Values are compared by their canonical form
  (:func:`canonical_value`), and a value not in the vocabulary encodes as an
  all-zero block: an unseen category is treated as "none of the known ones"
  rather than an error.

Records may carry extra keys (the label, ids, ...); they are ignored.

Canonical values. Categories and sensitive groups are compared by one
string each (:func:`~regtune.trainables.values.canonical_value`; the rules,
and how schemas stored before them are read, are in
:mod:`regtune.trainables.values`, which does not import torch).
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
from regtune.trainables.values import canonical_value, legacy_canonical, respelling

__all__ = [
    "CategoricalFeature",
    "FeatureSchema",
    "Label",
    "NumericFeature",
    "UnknownGroupError",
    "ValueIndex",
    "canonical_value",
    "legacy_canonical",
]

Label = str | int | float | bool

#: Version 2: vocabularies and groups hold canonical values (:func:`canonical_value`).
SCHEMA_VERSION = 2
#: Version 1: vocabularies and groups hold ``str(value)``, read by :func:`legacy_canonical`.
LEGACY_VERSION = 1

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
#: A stored numeric feature whose scale no value can be divided by.
BAD_SCALE = (
    "numeric[{i}] {name!r} has scale {scale!r}; a scale is a finite number above 0 "
    "(inputs are encoded as (x - center) / scale)"
)
SAME_VALUE = (
    "{what}: stored values {first!r} and {second!r} are one value ({canonical!r}) once "
    "written canonically (integral floats as integers, timestamps in ISO form, strings "
    "NFC without outer spaces), so a record holding it cannot be placed; re-fit the "
    "schema on data where they are one value"
)
SAME_GROUP = (
    "sensitive attribute {feature!r}: values {first!r} and {second!r} are one group "
    "({canonical!r}) once written canonically (integral floats as integers, timestamps "
    "in ISO form, strings NFC without outer spaces); make them one value in the data"
)


class ValueIndex:
    """Position of each known value of one feature (or of the groups), by canonical form.

    Attributes:
        names: the canonical form of each stored entry, in stored order (what
            a client should send; shown in error messages).
    """

    def __init__(self, stored: Sequence[str], *, legacy: bool, what: str) -> None:
        """Index ``stored`` texts; ``legacy`` reads them as ``str(value)`` (version 1).

        Raises:
            DataError: two entries share a canonical form (named with ``what``).
        """
        self._codes: dict[str, int] = {}
        names = []
        for code, text in enumerate(stored):
            name = legacy_canonical(text) if legacy else (canonical_value(text) or text)
            names.append(name)
            for form in (name, text) if legacy else (name,):
                other = self._codes.setdefault(form, code)
                if other != code:
                    raise DataError(
                        SAME_VALUE.format(
                            what=what, first=stored[other], second=text, canonical=name
                        )
                    )
        self.names = tuple(names)
        self._respell = respelling(self.names)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def exact(self) -> Mapping[str, int]:
        """Stored spellings (canonical names, and a version-1 schema's old texts) to
        positions: a string found here needs no :meth:`code` (a fast path)."""
        return self._codes

    def code(self, value: Any) -> int | None:
        """The position of ``value`` (any raw spelling), or None if missing or unseen."""
        if type(value) is str:  # the common case, and the serving hot path
            hit = self._codes.get(value)
            if hit is not None:  # a key's canonical form is its own entry's
                return hit
        canonical = canonical_value(value)
        if canonical is None:
            return None
        code = self._codes.get(canonical)
        if code is None and self._respell is not None:
            again = self._respell(value, canonical)
            code = None if again is None else self._codes.get(again)
        return code

    def codes(self, values: Sequence[Any]) -> np.ndarray:
        """:meth:`code` of each value as int64, -1 for missing or unseen."""
        out = np.full(len(values), -1, dtype=np.int64)
        for i, value in enumerate(values):
            code = self.code(value)
            if code is not None:
                out[i] = code
        return out


class UnknownGroupError(DataError):
    """A record's sensitive attribute holds a value that is not one of the groups.

    Attributes:
        index: the record's position; ``feature``: the sensitive attribute;
        ``value``: the raw value; ``groups``: the canonical group names.
    """

    def __init__(self, index: int, feature: str, value: Any, groups: Sequence[str]) -> None:
        super().__init__(
            UNKNOWN_GROUP.format(index=index, feature=feature, value=value, values=list(groups))
        )
        self.index = index
        self.feature = feature
        self.value = value
        self.groups = list(groups)


def _center_scale(values: np.ndarray) -> tuple[float, float]:
    """Mean and population std of finite ``values`` (scale 1 for a constant column).

    Values near the float64 limit (1e308) overflow the sum of squares (the
    std would be infinite, the column standardised to zeros): there the
    column is divided by its largest magnitude first and the result scaled
    back, which is finite for every finite column.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        center, scale = float(values.mean()), float(values.std())
        if values.size and not (math.isfinite(center) and math.isfinite(scale)):
            top = float(np.max(np.abs(values)))
            unit = values / top
            center, scale = float(unit.mean()) * top, float(unit.std()) * top
    return center, scale if scale > 0.0 else 1.0


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


@dataclass(frozen=True)
class FeatureSchema:
    """Everything needed to encode raw records; see the module docstring.

    ``classes[i]`` is the label value of class id ``i`` as the data loader names it
    (a built-in's declared class; otherwise the canonical value, an integral float as
    its int; older versions may hold ``"1.0"``); ``sensitive_values[g]``
    the stored name of group code ``g``, as the data loader and post-processing
    name it: its canonical value (``"1"``, not ``"1.0"``), or ``str(value)`` in a
    schema stored before groups were named canonically (the canonical names are
    :meth:`group_names` either way); vocabularies hold canonical values unless
    ``version`` is 1 (``str(value)``).

    Raises:
        DataError: on construction, if two vocabulary entries of one feature, or
            two groups, have one canonical form.
    """

    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]
    label: str
    classes: tuple[Label, ...]
    sensitive: str | None = None
    sensitive_values: tuple[str, ...] = ()
    image_shape: tuple[int, ...] | None = None
    bounds: tuple[float, float] | None = None
    #: How vocabularies are written: 2 canonical, 1 ``str(value)`` (stored before).
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        legacy = self.version == LEGACY_VERSION
        indexes = {
            c.name: ValueIndex(c.vocabulary, legacy=legacy, what=f"feature {c.name!r}")
            for c in self.categorical
        }
        # Groups keep the names the data loader and post-processing gave them: canonical
        # now, str(value) in older stores of either version. The legacy rule reads both.
        groups = ValueIndex(
            self.sensitive_values, legacy=True, what=f"sensitive attribute {self.sensitive!r}"
        )
        # Derived lookups, not fields: equality and JSON stay those of the stored texts.
        object.__setattr__(self, "_indexes", indexes)
        object.__setattr__(self, "_groups", groups)

    def value_index(self, feature: str) -> ValueIndex:
        """The canonical lookup of categorical ``feature``'s vocabulary."""
        index: ValueIndex = self._indexes[feature]  # type: ignore[attr-defined]
        return index

    def group_index(self) -> ValueIndex:
        """The canonical lookup of the sensitive groups (empty without any)."""
        index: ValueIndex = self._groups  # type: ignore[attr-defined]
        return index

    def group_names(self) -> list[str]:
        """The canonical name of each group code (what a record should hold)."""
        return list(self.group_index().names)

    def record_groups(
        self, records: Sequence[Mapping[str, Any]], *, strict: bool
    ) -> list[int | None] | None:
        """Group codes of raw records: None where the sensitive attribute is absent;
        None for all without a sensitive attribute.

        A value that is not one of the groups (None and NaN included) is refused
        when ``strict`` (the version's answer depends on the group: it has
        post-processing) or when the sensitive attribute is not a model feature
        (it is only there to name the group); otherwise it is an unseen category
        and its group is unknown (None). The server and ``regtune.load()`` both
        call this, so they refuse the same records.

        Raises:
            UnknownGroupError: naming the record, the value and the groups.
        """
        name = self.sensitive
        if name is None:
            return None
        index = self.group_index()
        refuse = strict or name not in self.input_names()
        out: list[int | None] = []
        for i, record in enumerate(records):
            if name not in record:
                out.append(None)
                continue
            code = index.code(record[name])
            if code is None and refuse:
                raise UnknownGroupError(i, name, record[name], index.names)
            out.append(code)
        return out

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
        numeric feature (images: pixels divided by their maximum). Vocabularies
        hold canonical values (:func:`canonical_value`; values that differ only
        in spelling, ``1.0`` and ``1``, are one category). ``sensitive_values``
        are kept as given, in group-code order: the data loader passes the
        canonical names it gave the groups (``Dataset.group_names``, the names
        post-processing files use too); a ``str(value)`` text given instead is
        kept and matched by its canonical form (:func:`legacy_canonical`).

        Raises:
            DataError: two given group values have one canonical form.
        """
        nums = []
        for name in numeric:
            if fixed_scale is not None:
                center, scale = fixed_scale
            else:
                center, scale = _center_scale(train[name].to_numpy(dtype=np.float64))
            nums.append(NumericFeature(name, float(center), float(scale)))
        cats = []
        for name in categorical:
            seen = {canonical_value(v) for v in train[name].drop_duplicates().tolist()}
            cats.append(CategoricalFeature(name, tuple(sorted(v for v in seen if v is not None))))
        return cls(
            numeric=tuple(nums),
            categorical=tuple(cats),
            label=label,
            classes=tuple(classes),
            sensitive=sensitive,
            sensitive_values=_group_texts(sensitive, sensitive_values),
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
        """Bool mask of encoded columns an attack may change: the numeric ones,
        except the sensitive attribute.

        One-hot columns are excluded because a fractional category is not a
        valid input. The sensitive attribute is never perturbed, whatever its
        type: a numeric one (a 0/1 column in a CSV) is standardised as a
        numeric feature, but input noise, adversarial training and robust
        accuracy must not move an example across groups. For images every
        pixel is numeric, so all are perturbable. The mask is derived from the
        schema each time a dataset is loaded (it is not stored with a model),
        so a model stored before this rule is evaluated under it too.
        """
        mask = torch.zeros(self.n_features, dtype=torch.bool)
        mask[: len(self.numeric)] = True
        for j, feature in enumerate(self.numeric):
            if feature.name == self.sensitive:
                mask[j] = False
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
        examples = {c.name: list(self.value_index(c.name).names[:3]) for c in self.categorical}
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
                elif canonical_value(value) is None:
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
                scaled = (raw - num.center) / num.scale
                # Near the float64 limit (1e308) raw - center itself overflows: divide first.
                wide = ~np.isfinite(scaled) & np.isfinite(raw)
                if wide.any():
                    scaled[wide] = raw[wide] / num.scale - num.center / num.scale
                out[:, j] = scaled
        offset = len(self.numeric)
        for cat in self.categorical:
            codes = self.value_index(cat.name).codes(columns[cat.name])
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
        index = self.group_index()
        codes = []
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise DataError(NOT_A_MAPPING.format(index=i, kind=type(record).__name__))
            if self.sensitive not in record:
                raise DataError(
                    MISSING_KEY.format(
                        index=i,
                        feature=self.sensitive,
                        expected=f"one of {list(index.names)}",
                    )
                )
            value = record[self.sensitive]
            code = index.code(value)
            if code is None:
                raise UnknownGroupError(i, self.sensitive, value, index.names)
            codes.append(code)
        return torch.tensor(codes, dtype=torch.int64)

    # -- persistence ---------------------------------------------------------

    def to_json(self) -> str:
        """Serialize to JSON; floats round-trip exactly, so encodings stay bitwise equal."""
        payload = {
            "version": self.version,
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
        """Inverse of :meth:`to_json`; version 1 (``str(value)`` vocabularies) is read
        as stored and looked up canonically (see the module docstring).

        Raises:
            DataError: naming ``source`` if the text is not a schema of version 1
                or 2, or if two stored values of one feature (or two groups)
                have one canonical form.
        """
        try:
            raw = json.loads(text)
            if raw["version"] not in (LEGACY_VERSION, SCHEMA_VERSION):
                raise ValueError(
                    f"version {raw['version']!r}, expected {LEGACY_VERSION} or {SCHEMA_VERSION}"
                )
            shape, bounds = raw["image_shape"], raw["bounds"]
            numeric = tuple(NumericFeature(n, float(c), float(s)) for n, c, s in raw["numeric"])
            for i, feature in enumerate(numeric):
                # Fitting never stores one (a constant column gets 1): a scale of 0,
                # below 0 or not finite would refuse or garble every value served.
                if not (math.isfinite(feature.scale) and feature.scale > 0.0):
                    raise ValueError(BAD_SCALE.format(i=i, name=feature.name, scale=feature.scale))
            return cls(
                numeric=numeric,
                categorical=tuple(CategoricalFeature(n, tuple(v)) for n, v in raw["categorical"]),
                label=raw["label"],
                classes=tuple(raw["classes"]),
                sensitive=raw["sensitive"],
                sensitive_values=tuple(raw["sensitive_values"]),
                image_shape=None if shape is None else tuple(int(d) for d in shape),
                bounds=None if bounds is None else (float(bounds[0]), float(bounds[1])),
                version=int(raw["version"]),
            )
        except DataError as exc:  # two stored values with one canonical form
            raise DataError(f"{source}: {exc}") from exc
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


def _group_texts(sensitive: str | None, given: Sequence[str]) -> tuple[str, ...]:
    names: dict[str, str] = {}
    for text in given:
        name = legacy_canonical(str(text))
        if name in names:
            raise DataError(
                SAME_GROUP.format(feature=sensitive, first=names[name], second=text, canonical=name)
            )
        names[name] = str(text)
    return tuple(str(text) for text in given)
