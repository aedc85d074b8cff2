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
      robust_steps: 20               # PGD steps; must exceed adversarial.steps
      robust_samples: 1000           # validation rows attacked (cost bound)
      early_stopping: {metric: val_loss, mode: min, patience: 0}
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
      fairness: {kind: none, strength: 0.0, temperature: 1.0, method: penalty, dual_lr: 1.0}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from regtune.errors import SpecError

__all__ = [
    "METRIC_MODES",
    "AdversarialConfig",
    "DatasetConfig",
    "EarlyStoppingConfig",
    "ElasticNetConfig",
    "FairnessConfig",
    "ModelConfig",
    "PenaltiesConfig",
    "TrainConfig",
    "TrainingConfig",
    "format_validation_error",
    "parse_train_config",
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

BUILTIN_DATASETS = ("digits", "breast_cancer", "adult", "german", "compas")
FILE_DATASETS = ("csv", "parquet")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    """Which data to train on: a built-in name, or a user CSV/Parquet file."""

    name: Literal["digits", "breast_cancer", "adult", "german", "compas", "csv", "parquet"]
    path: str | None = None
    label: str | None = None
    features: list[str] | None = None
    categorical: list[str] | None = None
    sensitive: str | None = None
    positive_label: str | int | float | bool | None = None
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    split_seed: int = 0

    @model_validator(mode="after")
    def _file_needs_path_and_label(self) -> DatasetConfig:
        if self.name in FILE_DATASETS and (self.path is None or self.label is None):
            raise ValueError(f"dataset {self.name!r} needs 'path' and 'label'")
        return self


class ModelConfig(_Strict):
    """Architecture: logistic regression, MLP or a small CNN (images only)."""

    arch: Literal["logreg", "mlp", "cnn"] = "mlp"
    width: int = Field(128, ge=1, le=65536)
    depth: int = Field(2, ge=1, le=64)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class EarlyStoppingConfig(_Strict):
    """Stop when ``metric`` has not improved for ``patience`` epochs (0: off)."""

    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = Field(0, ge=0)
    min_delta: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _known_metric(self) -> EarlyStoppingConfig:
        if self.metric not in METRIC_MODES:
            raise ValueError(
                f"unknown metric {self.metric!r}; allowed: {', '.join(sorted(METRIC_MODES))}"
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
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    robust_every: int = Field(5, ge=0)
    robust_eps: float = Field(0.1, gt=0.0)
    robust_steps: int = Field(20, ge=1)
    robust_samples: int = Field(1000, ge=1)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()


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
    #: by ``strength`` in absolute value.
    method: Literal["penalty", "lagrangian"] = "penalty"
    dual_lr: float = Field(1.0, gt=0.0)


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


class TrainConfig(_Strict):
    """The whole configuration of one training run."""

    dataset: DatasetConfig
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    penalties: PenaltiesConfig = PenaltiesConfig()

    @model_validator(mode="after")
    def _evaluation_attack_stronger(self) -> TrainConfig:
        adv = self.penalties.adversarial
        if adv.method in ("pgd", "trades") and self.training.robust_steps <= adv.steps:
            raise ValueError(
                f"training.robust_steps ({self.training.robust_steps}) must exceed "
                f"penalties.adversarial.steps ({adv.steps}): robust accuracy is measured "
                "with a stronger attack than the one trained against"
            )
        if self.penalties.mixup > 0 and self.penalties.fairness.kind != "none":
            raise ValueError(
                "penalties.mixup cannot be combined with penalties.fairness: mixed inputs "
                "belong to two groups at once; set one of them to its default"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _dataset_shorthand(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("dataset"), str):
            data = {**data, "dataset": {"name": data["dataset"]}}
        return data


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``key.path: message (got value)``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p not in ("function-after",))
        loc = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "<root>")
        got = err.get("input")
        shown = "" if isinstance(got, Mapping) else f" (got {got!r})"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}{shown}")
    return "\n".join(lines)


def parse_train_config(raw: Mapping[str, Any] | TrainConfig) -> TrainConfig:
    """Validate a nested dict into a :class:`TrainConfig`.

    Raises:
        SpecError: naming every bad key path, its value and what is allowed.
    """
    if isinstance(raw, TrainConfig):
        return raw
    if not isinstance(raw, Mapping):
        raise SpecError(f"a training config must be a mapping; got {type(raw).__name__}")
    try:
        return TrainConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise SpecError("invalid training config:\n" + format_validation_error(exc)) from exc
