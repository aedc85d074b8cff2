"""Is a version's meta.json well-formed? Every field a reader relies on, checked on load.

The content hash (:mod:`.integrity`) proves meta.json is the file that was
written; it cannot prove that what was written (or what someone wrote and
re-hashed) makes sense. A field a server or ``regtune.load`` would trip on
later (a ``classes`` list of the wrong length makes every prediction fail; a
malformed drift reference stops the service at start) is refused here, when
the version is loaded, with a :class:`~regtune.errors.CheckpointError`
naming the field, the value and what is allowed (:data:`BAD_FIELD`, the
words :mod:`.postprocess` uses for its own field too).

The drift reference's layout is :mod:`.reference`'s contract with
:mod:`regtune.serve.drift`; its constants (:data:`N_QUANTILES`,
:data:`SOURCE_RAW`, :data:`SOURCE_ENCODED`) are defined here.

:func:`check_postprocessing` is what :mod:`.postprocess` refuses in
``meta.json["postprocessing"]`` (it calls it before building its tables).

Imports no torch: ``regtune serve --write-config`` and ``regtune models show``
check a version's meta.json with :func:`read_servable` (:func:`read_checked`
and :func:`check_postprocessing`) without building its model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard, get_args

from regtune.errors import CheckpointError, SpecError
from regtune.platform.registry.integrity import read_verified
from regtune.platform.registry.location import check_name, version_number
from regtune.platform.registry.store import Place
from regtune.platform.results.schema import is_finite_number, is_number
from regtune.trainables.config import ROBUST_RESAMPLES, ThresholdRows, TrainConfig

__all__ = [
    "BAD_FIELD",
    "CALIBRATIONS",
    "CONSTRAINT_KINDS",
    "KINDS",
    "META_KEY",
    "N_QUANTILES",
    "SOURCE_ENCODED",
    "SOURCE_RAW",
    "THRESHOLD_MAX",
    "check_meta",
    "check_postprocessing",
    "field_error",
    "read_checked",
    "read_servable",
]

#: The kinds a version may be (``version.KINDS`` is this tuple).
KINDS: tuple[str, ...] = ("single", "ensemble", "student")
#: A malformed meta.json field: where, which field, its value and what is allowed.
BAD_FIELD = "model version {dir}: meta.json field '{field}' is {value}; allowed: {allowed}"
#: The drift reference's quantile levels 0.00, 0.01, ..., 1.00 (:mod:`.reference`).
N_QUANTILES = 101
#: ``reference.numeric_source`` values: exact raw columns, or reconstructed from float32 rows.
SOURCE_RAW = "raw"
SOURCE_ENCODED = "encoded"
#: Key of meta.json holding the post-processing (``null``: none; :mod:`.postprocess`).
META_KEY = "postprocessing"
#: ``postprocessing.settings.calibration`` values (``training.calibration``).
CALIBRATIONS: tuple[str, ...] = ("none", "temperature", "group_temperature")
#: ``postprocessing.settings.constraint.kind`` values (``penalties.fairness.kind``).
CONSTRAINT_KINDS: tuple[str, ...] = ("dp", "eo")
#: Largest threshold allowed: the next float above 1 ("never positive"; what
#: :func:`regtune.trainables.thresholds.fit_thresholds` picks to select none).
THRESHOLD_MAX = math.nextafter(1.0, 2.0)
#: ``postprocessing.settings.constraint.rows`` values (``training.threshold_rows``).
_FIT_ROWS: tuple[str, ...] = get_args(ThresholdRows)
#: ``quantization.scheme`` values (``quantize.SCHEME``; that module imports torch).
QUANT_SCHEMES: tuple[str, ...] = ("int8-dynamic",)
#: ``quantization``'s measured numbers (null: no finite value).
QUANT_NUMBERS: tuple[str, ...] = (
    "float_test_acc",
    "int8_test_acc",
    "float_size_bytes",
    "int8_size_bytes",
    "float_file_bytes",
)
#: The sections of every stored training config (``TrainConfig.model_dump``).
CONFIG_SECTIONS: tuple[str, ...] = ("dataset", "model", "training", "penalties")
#: ``schema.version`` values (``FeatureSchema``: 1 legacy, 2 canonical vocabularies).
SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)


class _Missing:
    """A field meta.json does not have (shown as ``missing``)."""

    def __repr__(self) -> str:
        return "missing"


_MISSING: Any = _Missing()


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def field_error(where: str, field: str, value: Any, allowed: str) -> CheckpointError:
    """The error for meta.json field ``field`` of the version in ``where`` holding
    ``value`` (shown up to 120 characters), naming what is ``allowed``."""
    return CheckpointError(
        BAD_FIELD.format(dir=where, field=field, value=_shown(value), allowed=allowed)
    )


def _share(value: Any) -> bool:
    return is_finite_number(value) and 0.0 <= value <= 1.0


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    def __init__(self, where: str) -> None:
        self.where = where

    def bad(self, field: str, value: Any, allowed: str) -> CheckpointError:
        return field_error(self.where, field, value, allowed)

    def require(self, ok: bool, field: str, value: Any, allowed: str) -> None:
        if not ok:
            raise self.bad(field, value, allowed)


def read_checked(
    directory: Place, name: str | None, number: int | None, *, staged: bool = False
) -> tuple[dict[str, Any], dict[str, bytes], list[TrainConfig]]:
    """A version's meta.json, the bytes of every file it lists and its members'
    training configs as :func:`check_meta` parsed them, with all that can be
    checked before its weights are read: each file's size and sha256 and
    meta.json's own digest (:func:`~.integrity.read_verified`), that it records
    the version a reference named (``name:number``: meta.json's ``name`` and
    ``version`` fields; None: a directory was named), and its fields
    (:func:`check_meta`). No torch is needed for it.

    ``staged``: a version being published, whose number is 0 until it is claimed.

    Raises:
        CheckpointError: naming the missing, unreadable, truncated or modified
            file, or the malformed field (a name or version other than the one
            named included), in :data:`BAD_FIELD`'s words.
    """
    where = directory.display()
    meta, contents = read_verified(directory)
    if number is not None:
        # Named as name:number, so stored in <name>/v<number>: it must say so.
        recorded = meta.get("name", _MISSING)
        if not (isinstance(recorded, str) and recorded == name):
            raise field_error(
                where, "name", recorded, f"{name!r}, the name of the model folder it is in"
            )
        version = meta.get("version", _MISSING)
        if not (_whole(version) and version == number):
            raise field_error(
                where, "version", version, f"{number}, the number of its folder v{number}"
            )
    folder = version_number(where.rstrip("/").rsplit("/", 1)[-1])
    configs = check_meta(meta, where, folder_number=0 if staged else folder)
    return meta, contents, configs


def read_servable(directory: Place, name: str | None, number: int | None) -> dict[str, Any]:
    """A version's meta.json, checked as loading the version checks it before the
    weights are read: :func:`read_checked`, then its post-processing against the
    schema's sensitive values (:func:`check_postprocessing`). No torch, and the
    model is not built.

    Raises:
        CheckpointError: a missing, truncated or modified file, a meta.json that
            records another version, or a malformed field (named, with what is
            allowed, in :data:`BAD_FIELD`'s words).
    """
    where = directory.display()
    meta, _, _ = read_checked(directory, name, number)
    post = meta.get(META_KEY)
    if post is not None:
        # check_meta made schema.sensitive_values a list of strings and
        # classes a list of architecture.n_classes labels.
        groups = list(meta["schema"]["sensitive_values"])
        check_postprocessing(
            post, sensitive_values=groups, n_classes=len(meta["classes"]), where=where
        )
    return meta


def check_meta(
    meta: Mapping[str, Any], where: str, *, folder_number: int | None
) -> list[TrainConfig]:
    """Check the fields of a (hash-verified) meta.json that readers rely on, and
    return its ``configs`` parsed (one :class:`~regtune.trainables.config.TrainConfig`
    per member, as ``parse_train_config(..., stored=True)`` reads a stored one).

    Args:
        meta: the parsed meta.json.
        where: the version directory, for messages.
        folder_number: ``N`` when the directory is named ``v<N>`` (the recorded
            version must equal it); 0 for a version being staged (its number
            is not claimed yet); None for any other directory (any version >= 1).

    Raises:
        CheckpointError: naming the first bad field, its value and what is allowed.
    """
    c = _Checker(where)
    name = meta.get("name", _MISSING)
    try:
        if not isinstance(name, str):
            raise SpecError("not a string")
        check_name(name)
    except SpecError:
        raise c.bad(
            "name", name, "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        ) from None
    version = meta.get("version", _MISSING)
    if folder_number == 0:
        c.require(version == 0 and _whole(version), "version", version, "0 while staged")
    elif folder_number is not None:
        c.require(
            _whole(version) and version == folder_number,
            "version",
            version,
            f"{folder_number}, the number of its folder v{folder_number}",
        )
    else:
        c.require(_whole(version) and version >= 1, "version", version, "an integer >= 1")
    kind = meta.get("kind", "single")
    c.require(kind in KINDS, "kind", kind, ", ".join(KINDS))
    _check_classes(c, meta)
    _check_members(c, meta)
    _check_shapes(c, meta)
    configs = _check_configs(c, meta)
    _check_schema(c, meta.get("schema", _MISSING))
    _check_quantization(c, meta.get("quantization"))
    lineage = meta.get("lineage", {})
    c.require(
        isinstance(lineage, Mapping),
        "lineage",
        lineage,
        "an object (trials, experiment, teacher, ...: its origin)",
    )
    _check_metrics(c, meta.get("metrics", {}))
    dataset = meta.get("dataset", _MISSING)
    if not isinstance(dataset, Mapping):
        raise c.bad("dataset", dataset, "an object")
    fingerprint = dataset.get("fingerprint")
    c.require(
        isinstance(fingerprint, str) and len(fingerprint) > 0,
        "dataset.fingerprint",
        fingerprint,
        "the dataset's sha256 (a string)",
    )
    _check_reference(c, meta.get("reference", _MISSING))
    return configs


def _check_classes(c: _Checker, meta: Mapping[str, Any]) -> None:
    architecture = meta.get("architecture")
    if not isinstance(architecture, Mapping):
        raise c.bad("architecture", architecture, "an object")
    n_classes = architecture.get("n_classes")
    c.require(
        _whole(n_classes) and n_classes >= 2,
        "architecture.n_classes",
        n_classes,
        "an integer >= 2",
    )
    classes = meta.get("classes")
    allowed = f"a list of {n_classes} distinct labels (one per output of the network)"
    if not isinstance(classes, list) or not all(
        isinstance(x, (str, int)) and not isinstance(x, bool) for x in classes
    ):
        raise c.bad("classes", classes, allowed)
    labels = [str(x) for x in classes]
    c.require(
        len(labels) == n_classes and len(set(labels)) == len(labels), "classes", classes, allowed
    )


def _check_members(c: _Checker, meta: Mapping[str, Any]) -> None:
    """``architecture.members``: one object per network, each ``model`` a model
    section as :class:`~regtune.trainables.config.ModelConfig` validates it."""
    from pydantic import ValidationError

    from regtune.trainables.config import ModelConfig, validation_problems

    members = meta["architecture"].get("members")  # an object: _check_classes
    c.require(
        isinstance(members, list)
        and bool(members)
        and all(isinstance(m, Mapping) for m in members),
        "architecture.members",
        members,
        "a non-empty list of objects {model, spectral_norm}, one per network",
    )
    for index, member in enumerate(members):
        model = member.get("model")
        try:
            ModelConfig.model_validate(model)
        except ValidationError as exc:
            problems = "; ".join(map(str, validation_problems(exc)))
            raise c.bad(
                f"architecture.members.{index}.model", model, f"a model section ({problems})"
            ) from None
        spectral = member.get("spectral_norm", _MISSING)
        c.require(
            isinstance(spectral, bool),
            f"architecture.members.{index}.spectral_norm",
            spectral,
            "true or false (whether the network was trained with spectral norm)",
        )


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_whole(d) and d >= 1 for d in value)


def _check_shapes(c: _Checker, meta: Mapping[str, Any]) -> None:
    """``architecture.input_shape`` (what the networks are built for) and the
    top-level ``input_shape`` (the same, as an encoded row is shaped)."""
    shape = meta["architecture"].get("input_shape", _MISSING)  # an object: _check_classes
    allowed = "a non-empty list of whole numbers >= 1 (the shape of one encoded row)"
    c.require(_is_shape(shape), "architecture.input_shape", shape, allowed)
    top = meta.get("input_shape", _MISSING)
    c.require(
        top == shape and _is_shape(top),
        "input_shape",
        top,
        f"the same as architecture.input_shape ({shape})",
    )


def _check_configs(c: _Checker, meta: Mapping[str, Any]) -> list[TrainConfig]:
    """``configs``: each member's training config, as regtune wrote it (every
    section present) and as :func:`~regtune.trainables.config.parse_train_config`
    validates a stored one: what quantizing and distilling build on. Returns
    the parsed configs (``ModelVersion.configs``)."""
    from regtune.trainables.config import parse_train_config

    n_members = len(meta["architecture"]["members"])  # a non-empty list: _check_members
    configs = meta.get("configs", _MISSING)
    c.require(
        isinstance(configs, list) and len(configs) == n_members,
        "configs",
        configs,
        f"a list of {n_members} training config(s), one per member network",
    )
    parsed: list[TrainConfig] = []
    for index, config in enumerate(configs):
        field = f"configs.{index}"
        if not isinstance(config, Mapping):
            raise c.bad(field, config, "a training config (an object)")
        absent = [s for s in CONFIG_SECTIONS if not isinstance(config.get(s), Mapping)]
        if absent:
            raise c.bad(
                field,
                config,
                f"a training config with the sections {', '.join(CONFIG_SECTIONS)} "
                f"(objects; not: {', '.join(absent)})",
            )
        try:
            parsed.append(parse_train_config(config, stored=True))
        except SpecError as exc:
            problems = "; ".join(map(str, exc.problems)) or str(exc)
            raise c.bad(field, config, f"a training config ({problems})") from None
    return parsed


def _check_schema(c: _Checker, schema: Any) -> None:
    """``schema``: the feature encoding a server applies to raw records, in
    the layout :meth:`~regtune.trainables.schema.FeatureSchema.to_json` writes
    (its values' canonical forms are checked when it is built, on load)."""
    if not isinstance(schema, Mapping):
        raise c.bad(
            "schema",
            schema,
            "an object {version, numeric, categorical, label, classes, sensitive, "
            "sensitive_values, image_shape, bounds} (the feature encoding)",
        )
    version = schema.get("version", _MISSING)
    c.require(version in SCHEMA_VERSIONS and _whole(version), "schema.version", version, "1 or 2")
    numeric = schema.get("numeric", _MISSING)
    c.require(
        isinstance(numeric, list), "schema.numeric", numeric, "a list of [name, center, scale]"
    )
    for index, entry in enumerate(numeric):
        ok = (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], str)
            and is_finite_number(entry[1])
            and is_finite_number(entry[2])
            and entry[2] > 0
        )
        c.require(
            ok,
            f"schema.numeric.{index}",
            entry,
            "[name, center, scale]: a string, a finite number and a finite number above 0 "
            "(inputs are encoded as (x - center) / scale)",
        )
    categorical = schema.get("categorical", _MISSING)
    c.require(
        isinstance(categorical, list),
        "schema.categorical",
        categorical,
        "a list of [name, vocabulary]",
    )
    for index, entry in enumerate(categorical):
        ok = (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], list)
            and all(isinstance(v, str) for v in entry[1])
        )
        c.require(
            ok,
            f"schema.categorical.{index}",
            entry,
            "[name, vocabulary]: a string and a list of strings",
        )
    label = schema.get("label", _MISSING)
    c.require(isinstance(label, str), "schema.label", label, "the label column's name (a string)")
    classes = schema.get("classes", _MISSING)
    c.require(isinstance(classes, list), "schema.classes", classes, "a list of class labels")
    sensitive = schema.get("sensitive", _MISSING)
    c.require(
        sensitive is None or isinstance(sensitive, str),
        "schema.sensitive",
        sensitive,
        "null or the sensitive column's name (a string)",
    )
    groups = schema.get("sensitive_values", _MISSING)
    c.require(
        isinstance(groups, list) and all(isinstance(g, str) for g in groups),
        "schema.sensitive_values",
        groups,
        "a list of the sensitive groups' names (strings; empty without a sensitive column)",
    )
    image = schema.get("image_shape", _MISSING)
    c.require(
        image is None or _is_shape(image),
        "schema.image_shape",
        image,
        "null or a list of whole numbers >= 1",
    )
    bounds = schema.get("bounds", _MISSING)
    c.require(
        bounds is None
        or (
            isinstance(bounds, list)
            and len(bounds) == 2
            and all(is_finite_number(b) for b in bounds)
        ),
        "schema.bounds",
        bounds,
        "null or [low, high], two finite numbers",
    )


def _check_quantization(c: _Checker, quantization: Any) -> None:
    """``quantization``: null (a float version) or the record
    :mod:`.quantize` writes; its scheme and layers rebuild the int8 module."""
    allowed = (
        "null (not quantized) or an object {scheme, layers, float_test_acc, int8_test_acc, "
        "float_size_bytes, int8_size_bytes, float_file_bytes}"
    )
    if quantization is None:
        return
    if not isinstance(quantization, Mapping):
        raise c.bad("quantization", quantization, allowed)
    scheme = quantization.get("scheme", _MISSING)
    c.require(
        scheme in QUANT_SCHEMES,
        "quantization.scheme",
        scheme,
        ", ".join(repr(s) for s in QUANT_SCHEMES),
    )
    layers = quantization.get("layers", _MISSING)
    c.require(
        isinstance(layers, list) and all(isinstance(x, str) for x in layers),
        "quantization.layers",
        layers,
        "a list of the quantized layers' names (strings)",
    )
    for key in QUANT_NUMBERS:
        if key in quantization:
            value = quantization[key]
            c.require(
                value is None or is_number(value),
                f"quantization.{key}",
                value,
                "a number (null: no finite value)",
            )


def _check_metrics(c: _Checker, metrics: Any) -> None:
    allowed = "an object of metric names to numbers (null: no finite value)"
    if not isinstance(metrics, Mapping):
        raise c.bad("metrics", metrics, allowed)
    for key, value in metrics.items():
        c.require(value is None or is_number(value), f"metrics.{key}", value, allowed)


def _check_reference(c: _Checker, reference: Any) -> None:
    if not isinstance(reference, Mapping):
        raise c.bad(
            "reference",
            reference,
            "an object with n, features, prediction (the training-input summary for drift)",
        )
    n = reference.get("n")
    c.require(_whole(n) and n >= 0, "reference.n", n, "the number of training rows (>= 0)")
    source = reference.get("numeric_source", SOURCE_ENCODED)
    c.require(
        source in (SOURCE_RAW, SOURCE_ENCODED),
        "reference.numeric_source",
        source,
        f"{SOURCE_RAW!r} or {SOURCE_ENCODED!r}",
    )
    features = reference.get("features")
    if not isinstance(features, Mapping):
        raise c.bad("reference.features", features, "an object of feature names to their summaries")
    for name, entry in features.items():
        _check_feature(c, f"reference.features.{name}", entry)
    prediction = reference.get("prediction")
    c.require(
        isinstance(prediction, Mapping) and all(_share(v) for v in prediction.values()),
        "reference.prediction",
        prediction,
        "an object of class labels to shares in [0, 1]",
    )


def _check_feature(c: _Checker, field: str, entry: Any) -> None:
    kinds = "{kind: numeric, quantiles, mean, std} or {kind: categorical, frequencies}"
    if not isinstance(entry, Mapping):
        raise c.bad(field, entry, kinds)
    kind = entry.get("kind")
    if kind == "numeric":
        quantiles = entry.get("quantiles")
        ok = (
            isinstance(quantiles, list)
            and len(quantiles) == N_QUANTILES
            and all(is_finite_number(q) for q in quantiles)
            and all(a <= b for a, b in itertools.pairwise(quantiles))
        )
        c.require(
            ok,
            f"{field}.quantiles",
            quantiles,
            f"a list of {N_QUANTILES} finite, non-decreasing numbers (levels 0.00 .. 1.00)",
        )
        for key in ("mean", "std"):
            if key in entry:
                c.require(
                    is_finite_number(entry[key]), f"{field}.{key}", entry[key], "a finite number"
                )
    elif kind == "categorical":
        frequencies = entry.get("frequencies")
        c.require(
            isinstance(frequencies, Mapping) and all(_share(v) for v in frequencies.values()),
            f"{field}.frequencies",
            frequencies,
            "an object of categories to shares in [0, 1]",
        )
    else:
        c.require(False, f"{field}.kind", kind, "'numeric' or 'categorical'")


def check_postprocessing(
    raw: Any, *, sensitive_values: Sequence[str], n_classes: int, where: str
) -> None:
    """Check ``meta.json["postprocessing"]`` (None: absent or null, nothing to check)
    against the schema's ``sensitive_values`` and the number of classes:
    what :meth:`~.postprocess.PostProcessing.from_meta` refuses before it builds
    the tables (no torch needed).

    Raises:
        CheckpointError: a malformed field, naming it and what is allowed.
    """
    if raw is None:
        return

    def bad(name: str, value: Any, allowed: str) -> CheckpointError:
        return field_error(where, f"{META_KEY}.{name}", value, allowed)

    if not isinstance(raw, Mapping):
        raise field_error(
            where,
            META_KEY,
            raw,
            "null or an object with groups, temperatures, fallback_temperature, "
            "thresholds, lottery (optional), settings, record",
        )
    groups = raw.get("groups")
    expected = [str(v) for v in sensitive_values]
    if groups != expected:
        raise bad("groups", groups, f"the schema's sensitive values {expected}")
    n_groups = len(expected)

    temps = raw.get("temperatures")
    per_group = f"{n_groups} (one per group)" if n_groups else "no per-group list"
    temps_allowed = f"null, or a list of 1 or {per_group} finite numbers > 0"
    if temps is not None:
        if not isinstance(temps, list) or len(temps) not in {1, n_groups} - {0}:
            raise bad("temperatures", temps, temps_allowed)
        if not all(is_finite_number(t) and t > 0 for t in temps):
            raise bad("temperatures", temps, temps_allowed)
    fallback = raw.get("fallback_temperature")
    if isinstance(temps, list) and len(temps) > 1:
        positive = isinstance(fallback, (int, float)) and fallback > 0
        if not (is_finite_number(fallback) and positive):
            raise bad(
                "fallback_temperature",
                fallback,
                "a finite number > 0 (the temperature of rows of an unknown group)",
            )
    elif fallback is not None:
        raise bad("fallback_temperature", fallback, "null unless temperatures is one per group")

    thresholds = raw.get("thresholds")
    if thresholds is not None:
        allowed = (
            f"null, or a list of {n_groups} (one per group) probabilities in [0, 1] "
            "(or the next float above 1: never positive), for a two-class model"
        )
        if n_classes != 2 or not n_groups:
            raise bad("thresholds", thresholds, "null (not a two-class model with groups)")
        if not isinstance(thresholds, list) or len(thresholds) != n_groups:
            raise bad("thresholds", thresholds, allowed)
        if not all(is_finite_number(t) and 0.0 <= t <= THRESHOLD_MAX for t in thresholds):
            raise bad("thresholds", thresholds, allowed)

    _check_lottery(raw.get("lottery"), thresholds, n_groups, n_classes, bad)

    settings = raw.get("settings", {})
    if not isinstance(settings, Mapping):
        raise bad("settings", settings, "an object {calibration, constraint}")
    calibration = settings.get("calibration", "none")
    if calibration not in CALIBRATIONS:
        raise bad("settings.calibration", calibration, ", ".join(CALIBRATIONS))
    constraint = settings.get("constraint")
    if constraint is not None:
        ok = (
            isinstance(constraint, Mapping)
            and constraint.get("kind") in CONSTRAINT_KINDS
            and is_finite_number(constraint.get("tolerance"))
            and constraint["tolerance"] >= 0
            and constraint.get("rows", "val") in _FIT_ROWS
        )
        if not ok:
            raise bad(
                "settings.constraint",
                constraint,
                "null or {kind: dp|eo, tolerance: a finite number >= 0, "
                f"rows (optional): {'|'.join(_FIT_ROWS)}}}",
            )
        _check_robust(constraint, bad)
        randomized = constraint.get("randomized", False)
        if not isinstance(randomized, bool) or (
            randomized and constraint.get("robust_quantile") is not None
        ):
            raise bad(
                "settings.constraint.randomized",
                randomized,
                "true or false (absent: false); true never with robust_quantile",
            )
        # The stored rule must be the one the settings ask for (a refit reads them).
        if randomized != (raw.get("lottery") is not None):
            raise bad(
                "settings.constraint.randomized",
                randomized,
                "true exactly when the version holds a lottery (postprocessing.lottery), "
                "false or absent with per-group thresholds",
            )
    elif raw.get("lottery") is not None:
        raise bad(
            "lottery",
            raw.get("lottery"),
            "null while settings.constraint is null (a lottery is fitted to a constraint)",
        )
    record = raw.get("record", {})
    if not isinstance(record, Mapping):
        raise bad("record", record, "an object")
    source = record.get("source")
    if source is not None and not isinstance(source, Mapping):
        raise bad(
            "record.source",
            source,
            "null or an object {temperatures, thresholds} (where each was fitted)",
        )


#: How far a lottery's weights may sum from 1 (float rounding of a fit's own).
LOTTERY_WEIGHT_SLACK = 1e-6


def _check_lottery(
    lottery: Any,
    thresholds: Any,
    n_groups: int,
    n_classes: int,
    bad: Callable[[str, Any, str], CheckpointError],
) -> None:
    """``postprocessing.lottery``: absent/null, or per group thresholds and
    weights (see :mod:`regtune.trainables.lottery_draws`)."""
    if lottery is None:
        return
    if n_classes != 2 or not n_groups:
        raise bad("lottery", lottery, "null (not a two-class model with groups)")
    if thresholds is not None:
        raise bad("lottery", lottery, "null while thresholds is set (one decision rule)")
    allowed = (
        f"null, or an object {{thresholds, weights}} of {n_groups} lists each (one per group) "
        "of equal, non-zero length: thresholds probabilities in [0, 1] (or the next float "
        f"above 1), weights finite numbers >= 0 summing to 1 per group (within "
        f"{LOTTERY_WEIGHT_SLACK:g})"
    )
    if not isinstance(lottery, Mapping) or set(lottery) != {"thresholds", "weights"}:
        raise bad("lottery", lottery, allowed)
    cuts, weights = lottery["thresholds"], lottery["weights"]
    ok = isinstance(cuts, list) and isinstance(weights, list)
    ok = ok and len(cuts) == n_groups and len(weights) == n_groups
    ok = ok and all(
        isinstance(c, list) and isinstance(w, list) and 0 < len(c) == len(w)
        for c, w in zip(cuts, weights, strict=False)
    )
    ok = ok and all(
        is_finite_number(t) and 0.0 <= t <= THRESHOLD_MAX for group in cuts for t in group
    )
    ok = ok and all(is_finite_number(v) and v >= 0 for group in weights for v in group)
    ok = ok and all(abs(sum(group) - 1.0) <= LOTTERY_WEIGHT_SLACK for group in weights)
    if not ok:
        raise bad("lottery", lottery, allowed)


def _check_robust(
    constraint: Mapping[str, Any], bad: Callable[[str, Any, str], CheckpointError]
) -> None:
    """A stored constraint's robust-threshold keys, when present, are what a
    config allows (``bad(field, value, allowed)`` makes the error)."""
    low, high = ROBUST_RESAMPLES
    checks = {
        "robust_quantile": (
            lambda v: is_finite_number(v) and 0.0 < v < 1.0,
            "a number strictly between 0 and 1",
        ),
        "robust_resamples": (
            lambda v: _whole(v) and low <= v <= high,
            f"a whole number in [{low}, {high}]",
        ),
        "seed": (_whole, "a whole number"),
    }
    for key, (ok, allowed) in checks.items():
        if key in constraint and not ok(constraint[key]):
            raise bad(f"settings.constraint.{key}", constraint[key], allowed)
    if "robust_quantile" in constraint:
        # Stored together (ThresholdSettings.as_constraint): a recount with
        # other draws than the trial's would judge other resamples.
        for key in ("robust_resamples", "seed"):
            if key not in constraint:
                raise bad(
                    f"settings.constraint.{key}",
                    "missing",
                    f"{checks[key][1]}, stored with robust_quantile",
                )
