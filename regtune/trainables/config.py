"""The configuration of one training run, validated.

A trial receives a plain nested ``dict`` (that is what Ray Tune samples); the
training loop turns it into a :class:`TrainConfig` here, once, so every key
and value is checked in one place with one message shape::

    penalties.l1: Input should be greater than or equal to 0 (got -1.0)

Unknown keys are rejected (``extra="forbid"``): a misspelt penalty must never
be silently ignored.

Shape (every key optional except ``dataset``)::

    dataset: digits                  # or {name: csv, path: ..., label: ...}
    model: {arch: mlp, width: 256, depth: 2, dropout: 0.1}
    training:
      epochs: 30
      batch_size: 128
      lr: 0.001
      optimizer: adamw               # adam | adamw | sgd
      lr_schedule: constant          # constant | cosine | onecycle (per step)
      seed: 0
      device: auto                   # auto | cpu | cuda
      robust_every: 5                # robust_acc every k epochs (0: never)
      robust_eps: 0.1                # fixed, so runs trained at other eps compare
      robust_steps: 20               # PGD steps; > adversarial.steps (pgd/trades)
      robust_samples: 1000           # validation rows attacked (cost bound)
      early_stopping: {metric: val_loss, mode: min, patience: 0}
      calibration: none              # none | temperature | group_temperature (after training)
    penalties:
      l1: 0.0
      l2: 0.0
      elastic_net: {strength: 0.0, l1_ratio: 0.5}
      weight_decay: 0.0              # decoupled (AdamW-style)
      label_smoothing: 0.0
      input_noise: 0.0               # std of gaussian noise on inputs
      mixup: 0.0                     # Beta(alpha, alpha); 0 disables
      max_norm: 0.0                  # per-unit L2 row norm cap; 0 disables
      spectral_norm: false
      adversarial: {method: none, eps: 0.1, steps: 7, step_size: null, beta: 6.0}
      fairness: {kind: none, strength: 0.0, temperature: 1.0, method: penalty, dual_lr: 1.0,
                 bound: null, margin: 0.0,  # keep the best epoch with val gap <= bound - margin
                 robust_quantile: null, robust_resamples: 200}  # robust post-processing thresholds

Every key changes the run or is refused. Combinations the loop cannot honour
are rejected here (mixup with TRADES or with a fairness penalty,
``test_fraction`` for a dataset with an official test split, ``path`` for a
built-in). A key that only matters when another has a certain value
(``training.momentum`` needs ``optimizer: sgd``) is listed in
:data:`DEPENDENCIES`; :func:`idle_keys` names the ones a config sets to no
effect, and the loaders of YAML files refuse them (a sampled trial config may
hold them: a sweep samples ``method`` and ``eps`` independently).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from regtune.errors import ROOT, Problem, SpecError, did_you_mean, shown
from regtune.trainables.catalog import (
    BUILTIN_DATASETS,
    BUILTINS,
    DATASET_NAMES,
    FAIRNESS_DATASETS,
    FILE_DATASETS,
)

__all__ = [
    "BUILTIN_DATASETS",
    "CSV_SEPARATORS",
    "DEFAULT_ROBUST_RESAMPLES",
    "DEFAULT_TEST_FRACTION",
    "DEPENDENCIES",
    "FILE_DATASETS",
    "METRIC_MODES",
    "MISSING_POLICIES",
    "ROBUST_RESAMPLES",
    "SEED_RANGE",
    "STRICT_CONFIG",
    "UNKNOWN_KEY",
    "AdversarialConfig",
    "DatasetConfig",
    "Dependency",
    "EarlyStoppingConfig",
    "ElasticNetConfig",
    "FairnessConfig",
    "ModelConfig",
    "PenaltiesConfig",
    "StrictModel",
    "ThresholdRows",
    "TrainConfig",
    "TrainingConfig",
    "default_value",
    "format_validation_error",
    "has_sensitive",
    "idle_keys",
    "idle_problem",
    "is_stored",
    "keyed_error",
    "parse_train_config",
    "robust_due",
    "validation_problems",
]

#: Every metric a trial reports each epoch, with the direction that is better.
#: The whole platform (objectives, early stopping, analysis) uses these names.
METRIC_MODES: dict[str, Literal["min", "max"]] = {
    "train_loss": "min",
    "val_loss": "min",
    "val_acc": "max",
    "gap": "min",
    "ece": "min",
    "brier": "min",
    "dp_diff": "min",
    "eo_diff": "min",
    "robust_acc": "max",
    "sparsity": "max",
    "n_params": "min",
    "size_bytes": "min",
}

#: The seeds a run takes (``training.seed``, ``dataset.split_seed``): a signed
#: 64-bit integer. torch's manual_seed takes -2**63 to 2**64 - 1, numpy's
#: generators take what the trainer reduces modulo 2**64 or 2**32, and a seed
#: is stored in Parquet as an int64: above 2**63 - 1 a run could not be
#: recorded (torch refused 2**64 with "Overflow when unpacking long long").
SEED_RANGE = (-(2**63), 2**63 - 1)
SEED_OUT_OF_RANGE = (
    "must be a whole number from -2**63 to 2**63 - 1 (a signed 64-bit integer, which "
    "torch's seeding and the results store both take)"
)


def _seed_in_range(value: int) -> int:
    if not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
        raise ValueError(SEED_OUT_OF_RANGE)
    return value


#: A seed field (:data:`SEED_RANGE`).
Seed = Annotated[int, AfterValidator(_seed_in_range)]

#: Share of rows in the test split when the dataset has no official one.
DEFAULT_TEST_FRACTION = 0.15

UNKNOWN_DATASET = "unknown dataset; allowed: {allowed}"
FILE_NEEDS = "dataset {name!r} needs 'path' and 'label'"
BUILTIN_FIELD = "dataset {name!r} is built in; {field!r} cannot be set for it ({why})"
#: Column separators ``dataset.sep`` accepts (csv only; ``None`` means ``","``).
CSV_SEPARATORS = (",", ";", "\t", "|")
#: What ``dataset.missing`` does with rows holding a missing or non-finite value.
MISSING_POLICIES = ("error", "drop")
DUPLICATE_NAMES = "lists {names} more than once; each column may appear once"
SENSITIVE_IS_LABEL = (
    "sensitive column {column!r} is the label; the sensitive attribute must be another column"
)
SEP_NOT_CSV = "dataset {name!r} is not a csv file; 'sep' applies only to dataset 'csv'"
OFFICIAL_TEST_SPLIT = (
    "dataset {name!r} has an official test split (its own test file), so test_fraction "
    "cannot apply; remove it (val_fraction sets the validation share of the training file)"
)
TRADES_MIXUP = (
    "penalties.mixup cannot be combined with penalties.adversarial.method 'trades': TRADES "
    "compares predictions on each clean input and its attacked copy, which a mixed input "
    "does not have; set mixup to 0 or use method pgd/fgsm_rs (attacked inputs are then mixed)"
)
MIXUP_FAIRNESS = (
    "penalties.mixup cannot be combined with penalties.fairness: mixed inputs "
    "belong to two groups at once; set one of them to its default"
)
ROBUST_STEPS = (
    "must exceed penalties.adversarial.steps ({steps}) while robust accuracy is measured "
    "(training.robust_every > 0), got {robust}: robust accuracy is measured with a stronger "
    "attack than the one trained against"
)
MARGIN_BOUND = (
    "penalties.fairness.margin ({margin}) must be below penalties.fairness.bound ({bound}): "
    "an epoch is kept only when its validation gap is at most bound - margin"
)
ROBUST_NEEDS_BOUND = (
    "penalties.fairness.robust_quantile ({quantile}) needs penalties.fairness.bound: robust "
    "thresholds keep the resampled gap within bound - margin (set bound, or robust_quantile: null)"
)
RANDOMIZED_ROBUST = (
    "penalties.fairness.randomized: true cannot take robust_quantile ({quantile}): the robust "
    "fit chooses among deterministic thresholds; set robust_quantile: null, or randomized: false"
)
IDLE_KEY = "has no effect: {reason}; remove it, or set {on} so that it applies"
#: A key no model field has (the sweep spec's wording, search_spaces.validate).
UNKNOWN_KEY = "unknown key {key}; allowed: {allowed}"
MODE_CONTRADICTS = (
    "mode {mode!r} contradicts metric {metric!r}, for which {expected!r} is better; "
    "omit mode to use {expected!r}"
)
ES_METRIC_UNMEASURED = (
    "early stopping on {metric!r} would never act: {why}; allowed here: {allowed}"
)
#: Metrics reported only on a dataset with a sensitive attribute (binary label).
GROUP_METRICS = ("dp_diff", "eo_diff")
ROBUST_NOT_MEASURED = (
    "robust accuracy is never measured while training.robust_every is 0; "
    "set training.robust_every (e.g. 1)"
)
NO_GROUPS = (
    "dataset {name!r} has no sensitive attribute (one of {datasets}, or csv/parquet "
    "with dataset.sensitive)"
)


def _es_allowed(*, robust: bool, groups: bool) -> str:
    """The early-stopping metrics a run reports, as an error message lists them."""
    skip = {*(() if robust else ("robust_acc",)), *(() if groups else GROUP_METRICS)}
    return ", ".join(m for m in METRIC_MODES if m not in skip)


#: The validation context key of a config read back from storage (:func:`parse_train_config`).
STORED = "stored"


def is_stored(info: ValidationInfo) -> bool:
    """Whether what is being validated was read back from storage (validated with
    ``context={STORED: True}``, as ``parse_train_config(stored=True)`` and a stored
    sweep spec are): the rules that guard only new input do not apply to what ran."""
    return bool(info.context and info.context.get(STORED))


def has_sensitive(dataset: DatasetConfig) -> bool:
    """Whether ``dataset`` has a sensitive attribute (a built-in with one, or a
    file with ``sensitive`` set), so the fairness gaps can be reported."""
    return dataset.name in FAIRNESS_DATASETS or dataset.sensitive is not None


#: The pydantic settings of every config and sweep-section model: unknown keys
#: refused, frozen, and (allow_inf_nan=False) a float setting of .inf or 1e999
#: refused ("Input should be a finite number"), not trained into NaN losses.
STRICT_CONFIG = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

BOOL_NOT_NUMBER = (
    "Input should be {kind}, not a boolean (YAML reads true/false, yes/no and on/off as booleans)"
)
BOOLS_NOT_NUMBERS = (
    "Input should be {kind}, with no boolean among them (YAML reads true/false, yes/no and "
    "on/off as booleans)"
)
#: The pydantic error type of a rule over several keys that names one key
#: (:func:`keyed_error`); its context holds the key path under the model.
KEYED_ERROR = "regtune_keyed"


def keyed_error(key: str, message: str, because: str = "") -> PydanticCustomError:
    """An error a model validator raises to blame ``key`` (a dotted path under
    the model) rather than the model as a whole: :func:`validation_problems`
    reports it at that path, and ``because`` (a dotted path from the config's
    root) names the other key whose value makes the problem."""
    return PydanticCustomError(KEYED_ERROR, message, {"regtune_key": key, "because": because})


def _number_kind(annotation: Any) -> str | None:
    """What a bool is refused as for a field of ``annotation`` (``a number``,
    ``a whole number``); None when the field takes booleans or no numbers."""
    origin = typing.get_origin(annotation)
    union = origin is typing.Union or origin is types.UnionType
    args = typing.get_args(annotation) if union else (annotation,)
    if bool in args:
        return None
    if float in args:
        return "a number"
    if int in args:
        return "a whole number"
    return None


def _element_kind(annotation: Any) -> str | None:
    """:func:`_number_kind` of the items of a tuple/list field (None otherwise)."""
    if typing.get_origin(annotation) not in (tuple, list):
        return None
    kinds = {_number_kind(a) for a in typing.get_args(annotation) if a is not Ellipsis}
    kinds.discard(None)
    return "a number" if "a number" in kinds else next(iter(kinds), None)


class StrictModel(BaseModel):
    """Base of every config and sweep-section model (:data:`STRICT_CONFIG`).

    A boolean is refused for a number field: pydantic would take ``true`` (and
    YAML's ``yes``/``on``) as 1, so ``penalties.l2: yes`` would train with L2 =
    1.0 without a word.
    """

    model_config = STRICT_CONFIG

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is None:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        kind = _number_kind(annotation) if isinstance(value, bool) else None
        if (
            kind is None
            and isinstance(value, (list, tuple))
            and any(isinstance(v, bool) for v in value)
        ):
            kind = _element_kind(annotation)
            kind = None if kind is None else f"a list of {kind.removeprefix('a ')}s"
            if kind is not None:
                raise ValueError(BOOLS_NOT_NUMBERS.format(kind=kind))
        if kind is not None:
            raise ValueError(BOOL_NOT_NUMBER.format(kind=kind))
        return value


_Strict = StrictModel


class DatasetConfig(_Strict):
    """Which data to train on: a built-in name, or a user CSV/Parquet file."""

    name: str
    path: str | None = None
    label: str | None = None
    features: list[str] | None = None
    categorical: list[str] | None = None
    sensitive: str | None = None
    positive_label: str | int | float | bool | None = None
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    #: None: :data:`DEFAULT_TEST_FRACTION`; refused for a dataset with an
    #: official test split (adult).
    test_fraction: float | None = Field(None, gt=0.0, lt=0.5)
    split_seed: Seed = 0
    #: The csv column separator (one of :data:`CSV_SEPARATORS`); None: ``","``.
    sep: Literal[",", ";", "\t", "|"] | None = None
    #: ``error``: a missing or non-finite value in a used column refuses the
    #: file (every such column named); ``drop``: those rows are dropped, with
    #: a warning saying how many.
    missing: Literal["error", "drop"] = "error"

    @field_validator("features", "categorical")
    @classmethod
    def _each_once(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            seen = [c for i, c in enumerate(value) if c in value[:i]]
            if seen:
                raise ValueError(DUPLICATE_NAMES.format(names=sorted(set(seen))))
        return value

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str) -> str:
        if value not in DATASET_NAMES:
            # The name itself is echoed once, cut, by validation_problems' "(got ...)".
            allowed = ", ".join(DATASET_NAMES) + did_you_mean(value, DATASET_NAMES)
            raise ValueError(UNKNOWN_DATASET.format(allowed=allowed))
        return value

    @field_validator("path", "label", "features", "categorical", "sensitive", "test_fraction")
    @classmethod
    def _fits_a_builtin(cls, value: Any, info: ValidationInfo) -> Any:
        # ``name`` is declared first, so it is validated (or absent) by now;
        # the error lands on the key that cannot apply.
        builtin = BUILTINS.get(info.data.get("name", ""))
        if value is None or builtin is None:
            return value
        key = info.field_name
        why = {"path": "it is cached by regtune", "label": "it is fixed"}.get(str(key))
        if why is None and builtin.image and key in ("features", "categorical", "sensitive"):
            why = "images"
        if why is not None:
            raise ValueError(BUILTIN_FIELD.format(name=builtin.name, field=key, why=why))
        if key == "test_fraction" and builtin.official_test:
            raise ValueError(OFFICIAL_TEST_SPLIT.format(name=builtin.name))
        return value

    @model_validator(mode="after")
    def _file_needs_path_and_label(self) -> DatasetConfig:
        if self.name in FILE_DATASETS and (self.path is None or self.label is None):
            raise ValueError(FILE_NEEDS.format(name=self.name))
        if self.sep is not None and self.name != "csv":
            raise ValueError(SEP_NOT_CSV.format(name=self.name))
        builtin = BUILTINS.get(self.name)
        label = builtin.label if builtin is not None else self.label
        if self.sensitive is not None and self.sensitive == label:
            raise ValueError(SENSITIVE_IS_LABEL.format(column=self.sensitive))
        return self

    @property
    def test_share(self) -> float:
        """The test split's share of all rows (``test_fraction`` or its default)."""
        return DEFAULT_TEST_FRACTION if self.test_fraction is None else self.test_fraction


class ModelConfig(_Strict):
    """Architecture: logistic regression, MLP or a small CNN (images only)."""

    arch: Literal["logreg", "mlp", "cnn"] = "mlp"
    width: int = Field(128, ge=1, le=65536)
    depth: int = Field(2, ge=1, le=64)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class EarlyStoppingConfig(_Strict):
    """Stop when ``metric`` has not improved for ``patience`` epochs (0: off).

    ``mode`` left out is the metric's direction (:data:`METRIC_MODES`); a mode
    that contradicts it is refused, as for a sweep's objectives. With
    ``robust_acc`` a measurement (every ``training.robust_every`` epochs)
    counts as one epoch of ``patience``.
    """

    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = Field(0, ge=0)
    min_delta: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _known_metric(self, info: ValidationInfo) -> EarlyStoppingConfig:
        if self.metric not in METRIC_MODES:
            raise ValueError(
                f"unknown metric {shown(self.metric)}; allowed: {', '.join(sorted(METRIC_MODES))}"
                + did_you_mean(self.metric, METRIC_MODES)
            )
        expected = METRIC_MODES[self.metric]
        if "mode" not in self.model_fields_set or (is_stored(info) and self.mode != expected):
            # Not an explicit setting (model_fields_set is unchanged): the
            # default follows the metric, so an omitted mode is never wrong.
            # A stored config (an earlier regtune wrote the old default, min,
            # also for val_acc) follows it too: nothing stored depends on it.
            object.__setattr__(self, "mode", expected)
        elif self.mode != expected:
            raise keyed_error(
                "mode",
                MODE_CONTRADICTS.format(mode=self.mode, metric=self.metric, expected=expected),
                because="training.early_stopping.metric",
            )
        return self


class TrainingConfig(_Strict):
    """Optimisation settings of one run."""

    epochs: int = Field(20, ge=1, le=100000)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr_schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    seed: Seed = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    robust_every: int = Field(5, ge=0)
    robust_eps: float = Field(0.1, gt=0.0)
    robust_steps: int = Field(20, ge=1)
    robust_samples: int = Field(1000, ge=1)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    #: Temperature scaling after training, fitted on validation by NLL
    #: (regtune.trainables.calibration); kept only when it lowers the
    #: validation ECE. ``group_temperature``: one per sensitive group.
    calibration: Literal["none", "temperature", "group_temperature"] = "none"


class ElasticNetConfig(_Strict):
    """``strength * (l1_ratio * |w|_1 + (1 - l1_ratio) / 2 * |w|_2^2)``."""

    strength: float = Field(0.0, ge=0.0)
    l1_ratio: float = Field(0.5, ge=0.0, le=1.0)


class AdversarialConfig(_Strict):
    """Adversarial training; ``eps`` is in input units (see attacks module)."""

    method: Literal["none", "fgsm_rs", "pgd", "trades"] = "none"
    eps: float = Field(0.1, ge=0.0)
    steps: int = Field(7, ge=1)
    step_size: float | None = Field(None, gt=0.0)
    beta: float = Field(6.0, ge=0.0)


#: Allowed ``penalties.fairness.robust_resamples`` (the one definition: the
#: registry checks stored settings against it too).
ROBUST_RESAMPLES = (20, 1000)
#: Default ``penalties.fairness.robust_resamples`` (its quantile then moves by
#: about one resample in 200 between seeds; the one definition).
DEFAULT_ROBUST_RESAMPLES = 200
#: Choices of :attr:`FairnessConfig.threshold_rows` (the one definition;
#: :data:`regtune.trainables.thresholds.FIT_ROWS` is derived from it).
ThresholdRows = Literal["val", "train+val"]


class FairnessConfig(_Strict):
    """Differentiable fairness penalty of strength ``strength``."""

    kind: Literal["none", "dp", "eo"] = "none"
    strength: float = Field(0.0, ge=0.0)
    #: Softmax temperature of the relaxation (1: the probability itself;
    #: lower tracks hard predictions more closely, see fairness.sharpen).
    temperature: float = Field(1.0, gt=0.0, le=1.0)
    #: ``penalty``: fixed ``strength`` times the relaxed gap. ``lagrangian``:
    #: one multiplier per group (and label, for eo) on the signed relaxed
    #: deviations, raised after each epoch by dual ascent on the training
    #: split's hard-prediction deviations with step ``dual_lr``, and bounded
    #: by ``strength`` in absolute value. ``postprocess``: no training term;
    #: after training, per-group decision thresholds are fitted on the
    #: validation split to meet ``kind`` (see regtune.trainables.thresholds).
    #: ``penalty+postprocess`` / ``lagrangian+postprocess``: both, in order.
    method: Literal[
        "penalty", "lagrangian", "postprocess", "penalty+postprocess", "lagrangian+postprocess"
    ] = "penalty"
    dual_lr: float = Field(1.0, gt=0.0)
    #: Constraint-aware selection: the run keeps the most accurate epoch whose
    #: validation gap (``dp_diff`` for kind dp, ``eo_diff`` for eo) is at most
    #: ``bound - margin`` (see regtune.trainables.selection). None: no bound.
    bound: float | None = Field(None, gt=0.0, le=1.0)
    #: Safety margin under ``bound`` that the validation gap must keep, since
    #: the test gap of a small group is noisier than the validation one.
    margin: float = Field(0.0, ge=0.0, lt=1.0)
    #: Rows the post-processing thresholds are fitted on: ``val`` (the
    #: validation split) or ``train+val`` (the kept model's scores on the
    #: training and validation splits: more rows in the smallest group-label
    #: cell, in-sample for the training part; see docs/fairness.md).
    threshold_rows: ThresholdRows = "val"
    #: Robust post-processing thresholds (None: off). A threshold tuple meets
    #: the constraint only when its gap is within ``bound - margin`` on the
    #: fitting rows and on at least this share of ``robust_resamples``
    #: stratified bootstrap resamples of them (seeded by ``training.seed``),
    #: so a noisy (group, label) cell gets a wider margin than a large one
    #: (see regtune.trainables.fairness_robust and docs/fairness.md).
    robust_quantile: float | None = Field(None, gt=0.0, lt=1.0)
    #: Bootstrap resamples of a robust fit (memory grows with resamples x rows).
    robust_resamples: int = Field(
        DEFAULT_ROBUST_RESAMPLES, ge=ROBUST_RESAMPLES[0], le=ROBUST_RESAMPLES[1]
    )
    #: Randomized thresholds (a lottery per group, Hardt et al.): each group
    #: mixes thresholds with fitted weights, and a row's draw is a hash of its
    #: own score, so the same input always gets the same decision (see
    #: regtune.trainables.threshold_lottery). Reaches accuracy at a gap that
    #: one threshold per group cannot (equalized odds above all).
    randomized: bool = False

    @property
    def training_method(self) -> Literal["penalty", "lagrangian"] | None:
        """The in-training form of the constraint (None: post-processing only)."""
        head = self.method.split("+")[0]
        if head == "penalty":
            return "penalty"
        return "lagrangian" if head == "lagrangian" else None

    @property
    def postprocess(self) -> bool:
        """True when per-group thresholds are fitted after training."""
        return self.method.endswith("postprocess")

    @model_validator(mode="after")
    def _margin_below_bound(self) -> FairnessConfig:
        if self.bound is not None and self.margin >= self.bound:
            raise ValueError(MARGIN_BOUND.format(margin=self.margin, bound=self.bound))
        if self.robust_quantile is not None and self.bound is None:
            raise ValueError(ROBUST_NEEDS_BOUND.format(quantile=self.robust_quantile))
        if self.randomized and self.robust_quantile is not None:
            raise ValueError(RANDOMIZED_ROBUST.format(quantile=self.robust_quantile))
        return self


class PenaltiesConfig(_Strict):
    """All regularizers; each is off at its default."""

    l1: float = Field(0.0, ge=0.0)
    l2: float = Field(0.0, ge=0.0)
    elastic_net: ElasticNetConfig = ElasticNetConfig()
    weight_decay: float = Field(0.0, ge=0.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    input_noise: float = Field(0.0, ge=0.0)
    mixup: float = Field(0.0, ge=0.0)
    max_norm: float = Field(0.0, ge=0.0)
    spectral_norm: bool = False
    adversarial: AdversarialConfig = AdversarialConfig()
    fairness: FairnessConfig = FairnessConfig()

    @model_validator(mode="after")
    def _mixup_combines(self) -> PenaltiesConfig:
        if self.mixup > 0 and self.adversarial.method == "trades" and self.adversarial.eps > 0:
            raise ValueError(TRADES_MIXUP)
        if self.mixup > 0 and self.fairness.kind != "none":
            raise ValueError(MIXUP_FAIRNESS)
        return self


class TrainConfig(_Strict):
    """The whole configuration of one training run."""

    dataset: DatasetConfig
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    penalties: PenaltiesConfig = PenaltiesConfig()

    @model_validator(mode="after")
    def _evaluation_attack_stronger(self) -> TrainConfig:
        adv, t = self.penalties.adversarial, self.training
        # Only while robust accuracy is measured: with robust_every 0,
        # robust_steps is an idle key and raising it would be refused.
        if adv.method in ("pgd", "trades") and t.robust_every > 0 and t.robust_steps <= adv.steps:
            raise keyed_error(
                "training.robust_steps",
                ROBUST_STEPS.format(robust=t.robust_steps, steps=adv.steps),
                because="penalties.adversarial.steps",
            )
        return self

    @model_validator(mode="after")
    def _early_stopping_metric_reported(self, info: ValidationInfo) -> TrainConfig:
        # A metric the run never reports would leave early stopping off
        # without a word (and the run keeping its last epoch). A stored
        # config records what ran: an earlier regtune ran such a config so.
        es, t = self.training.early_stopping, self.training
        robust, groups = t.robust_every > 0, has_sensitive(self.dataset)
        if es.patience == 0 or (es.metric == "robust_acc" and robust) or is_stored(info):
            return self
        if es.metric == "robust_acc":
            why, because = ROBUST_NOT_MEASURED, "training.robust_every"
        elif es.metric in GROUP_METRICS and not groups:
            why = NO_GROUPS.format(name=self.dataset.name, datasets=", ".join(FAIRNESS_DATASETS))
            because = "dataset.name"
        else:
            return self
        message = ES_METRIC_UNMEASURED.format(
            metric=es.metric, why=why, allowed=_es_allowed(robust=robust, groups=groups)
        )
        raise keyed_error("training.early_stopping.metric", message, because=because)

    @model_validator(mode="before")
    @classmethod
    def _dataset_shorthand(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("dataset"), str):
            data = {**data, "dataset": {"name": data["dataset"]}}
        return data


@dataclass(frozen=True)
class Dependency:
    """``key`` changes nothing while the value at ``on`` satisfies ``idle``."""

    key: str
    on: str
    idle: Callable[[Any], bool]
    reason: str
    #: (key, predicate) pairs; when a predicate holds for its key's value,
    #: ``key`` matters anyway (``kind`` picks the gap a ``bound`` or the
    #: thresholds constrain, even at strength 0).
    active_if: tuple[tuple[str, Callable[[Any], bool]], ...] = ()
    #: What a refusal says to set so that ``key`` applies (None: ``on``); for
    #: a key that several settings turn on (``kind``: a strength, a bound or
    #: a post-processing method).
    fix: str | None = None


def _is_zero(value: Any) -> bool:
    return value == 0


#: What turns on a key that needs a fairness training term.
STRENGTH_ON = "penalties.fairness.strength above 0"


#: Keys that only matter when another key has certain values. A config that
#: sets one of them while the other makes it idle is refused by the YAML
#: loaders (:func:`idle_keys`).
DEPENDENCIES: tuple[Dependency, ...] = (
    Dependency(
        "training.momentum", "training.optimizer", lambda v: v != "sgd",
        "only optimizer 'sgd' uses momentum (adam/adamw adapt their own)",
    ),
    *(
        Dependency(
            f"training.early_stopping.{key}", "training.early_stopping.patience", _is_zero,
            "early stopping is off while patience is 0",
        )
        for key in ("metric", "mode", "min_delta")
    ),
    *(
        Dependency(
            f"training.{key}", "training.robust_every", _is_zero,
            "robust accuracy is never measured while robust_every is 0",
        )
        for key in ("robust_eps", "robust_steps", "robust_samples")
    ),
    *(
        Dependency(
            f"model.{key}", "model.arch", lambda v: v == "logreg",
            "arch 'logreg' is one linear layer",
        )
        for key in ("width", "depth", "dropout")
    ),
    Dependency(
        "model.depth", "model.arch", lambda v: v == "cnn",
        "arch 'cnn' has a fixed number of layers",
    ),
    Dependency(
        "penalties.elastic_net.l1_ratio", "penalties.elastic_net.strength", _is_zero,
        "elastic net is off while its strength is 0",
    ),
    *(
        Dependency(
            f"penalties.adversarial.{key}", "penalties.adversarial.method",
            lambda v: v == "none", "adversarial training is off while method is 'none'",
        )
        for key in ("eps", "steps", "step_size", "beta")
    ),
    Dependency(
        "penalties.adversarial.method", "penalties.adversarial.eps", _is_zero,
        "no input moves while eps is 0",
    ),
    Dependency(
        "penalties.adversarial.steps", "penalties.adversarial.method",
        lambda v: v == "fgsm_rs", "method 'fgsm_rs' takes a single step",
    ),
    Dependency(
        "penalties.adversarial.beta", "penalties.adversarial.method",
        lambda v: v != "trades", "only method 'trades' has a trade-off beta",
    ),
    *(
        Dependency(
            f"penalties.fairness.{key}", "penalties.fairness.kind", lambda v: v == "none",
            "the fairness penalty is off while kind is 'none'",
        )
        for key in (
            "strength", "temperature", "method", "dual_lr", "bound", "threshold_rows",
            "robust_quantile", "robust_resamples", "randomized",
        )
    ),
    Dependency(
        "penalties.fairness.kind", "penalties.fairness.strength", _is_zero,
        "the fairness penalty is off while its strength is 0, and no bound or method "
        "ending in 'postprocess' uses it",
        active_if=(
            ("penalties.fairness.bound", lambda v: v is not None),
            ("penalties.fairness.method", lambda v: str(v).endswith("postprocess")),
        ),
        fix=(
            "penalties.fairness.strength above 0, a penalties.fairness.bound, or a "
            "penalties.fairness.method ending in 'postprocess'"
        ),
    ),
    *(
        Dependency(
            f"penalties.fairness.{key}", "penalties.fairness.method",
            lambda v: v == "postprocess",
            "method 'postprocess' adds no training term (use 'penalty+postprocess')",
        )
        for key in ("strength", "temperature")
    ),
    Dependency(
        "penalties.fairness.margin", "penalties.fairness.bound", lambda v: v is None,
        "there is no constraint to keep a margin under while bound is unset",
    ),
    *(
        Dependency(
            f"penalties.fairness.{key}", "penalties.fairness.method",
            lambda v: not str(v).endswith("postprocess"),
            "only a method ending in 'postprocess' fits thresholds",
        )
        for key in ("threshold_rows", "robust_quantile", "robust_resamples", "randomized")
    ),
    Dependency(
        "penalties.fairness.robust_resamples", "penalties.fairness.robust_quantile",
        lambda v: v is None, "robust thresholds are off while robust_quantile is null",
    ),
    Dependency(
        "penalties.fairness.dual_lr", "penalties.fairness.method",
        lambda v: not str(v).startswith("lagrangian"),
        "only method 'lagrangian' (or 'lagrangian+postprocess') takes dual steps",
    ),
    # The training term is strength x the relaxed gap, and the Lagrangian
    # multipliers are clamped to [-strength, strength]: at strength 0 neither
    # moves a weight. A bound still keeps its epoch at strength 0, and only
    # while method has a training part (post-processing alone keeps the last
    # epoch), so a 'penalty' method with a bound is not idle; 'lagrangian'
    # then trains exactly as 'penalty' does.
    Dependency(
        "penalties.fairness.temperature", "penalties.fairness.strength", _is_zero,
        "it sharpens the relaxed gap of the training term, which is strength times that "
        "gap: nothing while strength is 0",
        fix=STRENGTH_ON,
    ),
    Dependency(
        "penalties.fairness.dual_lr", "penalties.fairness.strength", _is_zero,
        "the Lagrangian multipliers are bounded by strength, so dual steps cannot move "
        "them while strength is 0",
        fix=STRENGTH_ON,
    ),
    Dependency(
        "penalties.fairness.method", "penalties.fairness.strength", _is_zero,
        "its training part ('penalty' or 'lagrangian') adds nothing while strength is 0 "
        "(the penalty is strength times the relaxed gap; the Lagrangian multipliers are "
        "bounded by strength), and no bound keeps an epoch; for thresholds alone use "
        "method 'postprocess'",
        active_if=(
            ("penalties.fairness.method", lambda v: v == "postprocess"),
            ("penalties.fairness.bound", lambda v: v is not None),
        ),
        fix=STRENGTH_ON,
    ),
    Dependency(
        "penalties.fairness.method", "penalties.fairness.strength", _is_zero,
        "the Lagrangian multipliers are bounded by strength, so they stay 0 while strength "
        "is 0 and 'lagrangian' trains as 'penalty' does (a bound keeps its epoch with either)",
        active_if=(("penalties.fairness.method", lambda v: not str(v).startswith("lagrangian")),),
        fix=STRENGTH_ON,
    ),
)  # fmt: skip


def _lookup(config: BaseModel, path: str) -> tuple[bool, Any]:
    """(set explicitly, value) of the dotted ``path`` in ``config``."""
    node: Any = config
    explicit = True
    for key in path.split("."):
        explicit = explicit and key in node.model_fields_set
        node = getattr(node, key)
    return explicit, node


def idle_keys(config: TrainConfig) -> list[Problem]:
    """Keys ``config`` sets explicitly that change nothing (see :data:`DEPENDENCIES`)."""
    found: list[Problem] = []
    for dep in DEPENDENCIES:
        explicit, _ = _lookup(config, dep.key)
        if explicit and _idle_under(config, dep) and all(p.path != dep.key for p in found):
            found.append(_idle_problem(dep))
    return found


def idle_problem(config: TrainConfig, path: str) -> Problem | None:
    """Why the key at dotted ``path`` would change nothing in ``config`` were it
    set (:data:`DEPENDENCIES`), as :func:`idle_keys` words it; None when it
    would apply. For a setting given outside the config (``Trainer(config,
    threshold_rows=...)``)."""
    dep = next((d for d in DEPENDENCIES if d.key == path and _idle_under(config, d)), None)
    return None if dep is None else _idle_problem(dep)


def _idle_under(config: TrainConfig, dep: Dependency) -> bool:
    if any(holds(_lookup(config, key)[1]) for key, holds in dep.active_if):
        return False
    return dep.idle(_lookup(config, dep.on)[1])


def _idle_problem(dep: Dependency) -> Problem:
    return Problem(dep.key, IDLE_KEY.format(reason=dep.reason, on=dep.fix or dep.on), dep.on)


def default_value(path: str) -> Any:
    """The default of a dotted TrainConfig key path (``training.optimizer``)."""
    cls: type[BaseModel] = TrainConfig
    value: Any = None
    for key in path.split("."):
        field = cls.model_fields[key]
        value = field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            cls = type(value)
    return value


def validation_problems(exc: ValidationError, prefix: Iterable[str] = ()) -> list[Problem]:
    """Each pydantic error as a :class:`~regtune.errors.Problem` naming the key
    path (under ``prefix``), what is allowed and the value given.

    The one translation of pydantic's errors into regtune's message shape;
    every validator of configs, specs and sections uses it.
    """
    found = []
    for err in exc.errors():
        loc = [*prefix, *(str(p) for p in err["loc"] if p != "function-after")]
        got = err.get("input")
        message = err["msg"].removeprefix("Value error, ") + _suggestion(err)
        echo = "" if isinstance(got, Mapping) else f" (got {shown(got)})"
        because = ""
        if err["type"] == "extra_forbidden" and err["loc"]:
            # A misspelt key at any depth, in the sweep spec's words: the
            # keys allowed where it stands, and the closest one.
            message, echo = _unknown_key(exc.title, err["loc"]), ""
        if err["type"] == KEYED_ERROR:
            # A rule over several keys, blamed on one key (keyed_error); its
            # message names the values, so nothing is echoed.
            ctx = err.get("ctx") or {}
            loc = [*loc, *str(ctx.get("regtune_key", "")).split(".")]
            because, echo = str(ctx.get("because", "")), ""
        found.append(Problem(".".join(p for p in loc if p) or ROOT, f"{message}{echo}", because))
    return found


def _unknown_key(title: str, loc: tuple[str | int, ...]) -> str:
    """:data:`UNKNOWN_KEY` for the key at the end of ``loc`` under the model named
    ``title``: the keys allowed where it stands (when that model can be told)
    and the closest one."""
    key = loc[-1]
    model = _model_at(_strict_models().get(title), loc[:-1])
    if model is None:
        return f"unknown key {shown(key)}"
    allowed = list(model.model_fields)
    message = UNKNOWN_KEY.format(key=shown(key), allowed=", ".join(allowed))
    return message + (did_you_mean(key, allowed) if isinstance(key, str) else "")


def _strict_models() -> dict[str, type[BaseModel]]:
    """Every :class:`StrictModel` subclass by class name (a name two classes
    share is left out: which one an error came from cannot be told)."""
    found: dict[str, type[BaseModel] | None] = {}
    todo: list[type[BaseModel]] = [StrictModel]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = None if cls.__name__ in found else cls
        todo.extend(cls.__subclasses__())
    return {name: cls for name, cls in found.items() if cls is not None}


def _model_at(model: type[BaseModel] | None, path: Iterable[str | int]) -> type[BaseModel] | None:
    """The model class validating the mapping at ``path`` under ``model``
    (list indices skipped); None when the path leads to no single model."""
    for part in path:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = None if field is None else _model_in(field.annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The one model class in ``annotation`` (itself, or inside Optional, a
    union, a list or tuple); None when there is none or several."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    inner = {_model_in(arg) for arg in typing.get_args(annotation)} - {None}
    return inner.pop() if len(inner) == 1 else None


def _suggestion(err: Any) -> str:
    """`` (did you mean 'x'?)`` for a misspelt value of a fixed list (a Literal
    field: ``arch: mpl``, ``optimizer: adamm``), else ``""``."""
    got = err.get("input")
    if err["type"] != "literal_error" or not isinstance(got, str):
        return ""
    choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
    return did_you_mean(got, choices)


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``key.path: message (got value)``."""
    parts = [p for p in prefix.split(".") if p]
    return "\n".join(map(str, validation_problems(exc, parts)))


def parse_train_config(
    raw: Mapping[str, Any] | TrainConfig, *, stored: bool = False
) -> TrainConfig:
    """Validate a nested dict into a :class:`TrainConfig`.

    ``stored``: ``raw`` is a config regtune dumped earlier (a checkpoint's, a
    registry version's ``meta.json``), so data an earlier regtune wrote stays
    readable: an early-stopping mode contradicting its metric (the old default
    ``min``, also for ``val_acc``) follows the metric, and an early-stopping
    metric the run did not report is kept as it ran (off), not refused.

    Raises:
        SpecError: naming every bad key path, its value and what is allowed
            (``exc.problems`` holds them one by one).
    """
    if isinstance(raw, TrainConfig):
        return raw
    if not isinstance(raw, Mapping):
        raise SpecError(f"a training config must be a mapping; got {type(raw).__name__}")
    try:
        return TrainConfig.model_validate(dict(raw), context={STORED: True} if stored else None)
    except ValidationError as exc:
        raise SpecError.from_problems("invalid training config:", validation_problems(exc)) from exc


def robust_due(epoch: int, every: int, *, last: bool) -> bool:
    """Whether robust accuracy is measured afresh at ``epoch`` (1-based): at
    epoch 1, every ``every`` epochs and at the ``last``; in between the trainer
    carries the previous measurement forward. Never with ``every`` <= 0. The
    one rule of the trainer, the fused cohort and the sweep's rung check."""
    return every > 0 and (epoch == 1 or epoch % every == 0 or last)
