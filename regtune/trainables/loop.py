"""One training run: ``config -> metrics per epoch``, checkpointable and resumable.

:class:`Trainer` owns the model, optimizer, RNG and early-stopping state of a
run; :meth:`Trainer.run_epoch` trains one epoch and returns that epoch's
metrics (the names in :data:`regtune.trainables.config.METRIC_MODES`). The
Ray Tune adapter and ``regtune train`` both drive it; neither adds maths.

What the reported numbers mean:

- ``train_loss`` is the mean plain cross-entropy of the logits the model
  produced on its training batches during the epoch (Keras-style running
  mean: a second pass over the training set would cost a third of an epoch).
  With mixup, noise, FGSM-RS or PGD these are the augmented (attacked)
  inputs; with TRADES the clean inputs (its natural cross-entropy term; the
  attacked copies enter only its KL term).
- ``val_loss``, ``val_acc``, ``ece``, ``brier``, ``dp_diff``, ``eo_diff``
  come from one no-grad pass over the validation split in eval mode.
- ``robust_acc`` is PGD accuracy (``training.robust_steps`` steps at
  ``training.robust_eps``, on at most ``training.robust_samples`` validation
  rows). It is measured at epoch 1, every ``robust_every`` epochs and at the
  last epoch; in between the last measurement is carried forward and
  ``robust_acc_epoch`` says which epoch it comes from.

Every random draw of training (shuffling, noise, mixup, attack starts) comes
from one ``torch.Generator`` seeded by ``training.seed``; dropout uses torch's
global RNG. Both are part of the checkpoint, so a restored run continues
exactly as if it had not stopped. The random starts of the robust-accuracy
attack come from a generator of their own, seeded from ``training.seed``, the
epoch and the split (:func:`evaluation_generator`), so the evaluation settings
(``robust_every``, ``robust_samples``, ...) never change the trained model,
except through early stopping on ``robust_acc``, which they then feed.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from regtune.errors import CheckpointError, SpecError
from regtune.trainables import (
    attacks,
    calibration,
    fairness,
    lottery_draws,
    metrics,
    penalties,
    selection,
    threshold_lottery,
    thresholds,
)
from regtune.trainables.bootstrap import fairness_intervals, group_keys
from regtune.trainables.checkpoint import MISSING, bad_field, load_tree, save_tree
from regtune.trainables.config import (
    FILE_DATASETS,
    GROUP_METRICS,
    TrainConfig,
    default_value,
    idle_problem,
    parse_train_config,
    robust_due,
)
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.models import build_model
from regtune.trainables.optim import SGD, AdamW
from regtune.trainables.threshold_settings import ThresholdSettings

__all__ = [
    "IDLE_ON_DATA_MSG",
    "RunResult",
    "Trainer",
    "check_dataset_fits",
    "check_early_stopping_fits",
    "data_words",
    "epoch_metrics",
    "evaluation_generator",
    "idle_on_data",
    "kept_epoch",
    "perturbing_settings",
    "reports_gaps",
    "resolve_device",
    "robust_decides",
    "train",
]

_log = logging.getLogger(__name__)

#: Rows per forward pass when evaluating (memory bound, not a tuning knob).
EVAL_BATCH = 4096
#: Share of the run spent warming up under the one-cycle schedule.
ONECYCLE_WARMUP = 0.4
#: One-cycle's momentum (Adam's beta1) peak and its low point as a share of
#: the peak: torch's defaults, 0.95 and 0.85.
ONECYCLE_MAX_MOMENTUM = 0.95
ONECYCLE_MOMENTUM_DIP = 0.85 / 0.95

FAIRNESS_NEEDS_GROUPS_MSG = (
    "penalties.fairness.kind={kind!r} needs a dataset with a sensitive attribute and a "
    "two-class label; {data} has {sensitive} and a label of {n_classes} classes: {advice}"
)
#: FAIRNESS_NEEDS_GROUPS_MSG's advice, by what the dataset lacks. Not "set kind
#: to 'none'": the section's other keys (strength, method, ...) would then be
#: refused as idle.
FAIRNESS_ADVICE_NO_SENSITIVE = "declare dataset.sensitive, or remove the penalties.fairness section"
FAIRNESS_ADVICE_NOT_BINARY = (
    "remove the penalties.fairness section (the fairness penalties and thresholds need a "
    "two-class label)"
)
NO_NUMERIC_FEATURE_MSG = (
    "{keys}: {data} has no numeric feature to perturb (input noise and attacks move only "
    "numeric features, and {why}), so {what}; {advice}"
)
#: NO_NUMERIC_FEATURE_MSG's ``why``: no numeric feature at all.
ALL_CATEGORICAL = "every feature here is categorical"
#: NO_NUMERIC_FEATURE_MSG's ``why``: the sensitive attribute is the only numeric
#: feature, and it is never perturbed (``FeatureSchema.perturb_mask``).
ONLY_SENSITIVE_NUMERIC = (
    "the only numeric feature here is the sensitive attribute {name!r}, which is never perturbed"
)
#: The one-line warning of a stored config whose settings do nothing on its data.
IDLE_ON_DATA_MSG = (
    "{keys}: idle on this dataset (nothing to perturb or report); training runs as without them"
)
GROUP_CALIBRATION_MSG = (
    "training.calibration='group_temperature' needs a dataset with a sensitive attribute; "
    "{data} has none: use 'temperature', or declare dataset.sensitive"
)
#: The config key ``Trainer(threshold_rows=...)`` overrides.
THRESHOLD_ROWS = "penalties.fairness.threshold_rows"
CHECKPOINT_NOT_A_DIR_MSG = (
    "checkpoint directory {path} is a file, not a directory; choose a directory for the "
    "checkpoint (nothing was changed)"
)
CHECKPOINT_EXISTS_MSG = (
    "checkpoint directory {path} already exists; pass --resume to continue it or choose "
    "another directory (nothing was changed)"
)
NOTHING_TO_RESUME_MSG = (
    "resume: no checkpoint directory at {path}; run without --resume to start the run"
)
EARLY_STOP_NO_GAP_MSG = (
    "training.early_stopping.metric: early stopping on {metric!r} would never act: "
    "the fairness gaps are reported for a two-class label with a sensitive attribute, and "
    "{data} has {sensitive} and a label of {n_classes} classes; use another metric "
    "(val_loss, val_acc, ...) or training.early_stopping.patience 0"
)
CUDA_MISSING_MSG = "training.device='cuda' but torch sees no CUDA device; use 'auto' or 'cpu'"
UNKNOWN_SPLIT_MSG = "split {split!r} is not one of {allowed}"
NOT_BINARY_MSG = "positive-class scores need a binary task; dataset {name!r} has {n} classes"
CHECKPOINT_MISMATCH_MSG = (
    "checkpoint {path} was written for a different configuration ({what} differs); "
    "restore it with the configuration it was trained with"
)


def check_dataset_fits(cfg: TrainConfig, ds: Dataset, *, stored: bool = False) -> None:
    """Refuse a config that ``ds`` cannot train as asked: a fairness penalty needs a
    binary label with a sensitive attribute, group temperature calibration a
    sensitive attribute, early stopping on a fairness gap a dataset the gaps are
    reported for (else it would never act), and input noise, adversarial training
    and robust accuracy a numeric feature to perturb (else they would change
    nothing, and robust_acc would be val_acc). The one place these are checked: the
    trainer, the fused cohort and a sweep's driver before Ray starts all call it.

    ``stored``: ``cfg`` ran before or was checked already (a resumed sweep's,
    a trial's inside Ray, a registered teacher's settings a student copies).
    The rules that guard only new input then do not apply, as for
    ``parse_train_config(stored=True)``: a setting that perturbs nothing, and
    early stopping on a gap that is never reported, are idle (training runs as
    without them; :func:`idle_on_data` names them) rather than refused. The
    fairness and group-calibration rules apply to every config: they are not
    settings that merely do nothing.

    Raises:
        SpecError: the first that fails, naming the key and what would work.
    """
    fair = cfg.penalties.fairness
    data, sensitive = data_words(cfg, ds)
    if cfg.training.calibration == "group_temperature" and ds.train.s is None:
        raise SpecError(GROUP_CALIBRATION_MSG.format(data=data))
    if fair.kind != "none" and not reports_gaps(ds):
        raise SpecError(
            FAIRNESS_NEEDS_GROUPS_MSG.format(
                kind=fair.kind,
                data=data,
                sensitive=sensitive,
                n_classes=ds.n_classes,
                advice=FAIRNESS_ADVICE_NO_SENSITIVE
                if ds.train.s is None and ds.n_classes == 2
                else FAIRNESS_ADVICE_NOT_BINARY,
            )
        )
    if stored:
        return
    perturbing = _perturbing(cfg)
    if perturbing and not bool(ds.perturb_mask.any()):
        raise SpecError(_no_numeric_feature(cfg, ds, perturbing, data))
    check_early_stopping_fits(cfg, ds)


def check_early_stopping_fits(cfg: TrainConfig, ds: Dataset) -> None:
    """Refuse early stopping on a fairness gap ``ds`` does not report (it would
    never act); part of :func:`check_dataset_fits` for new input.

    Raises:
        SpecError: :data:`EARLY_STOP_NO_GAP_MSG`.
    """
    if _early_stop_gap_idle(cfg, ds):
        # The config refuses it for a dataset without a sensitive column;
        # a file's label may still have more than two classes.
        es = cfg.training.early_stopping
        data, sensitive = data_words(cfg, ds)
        raise SpecError(
            EARLY_STOP_NO_GAP_MSG.format(
                metric=es.metric, data=data, sensitive=sensitive, n_classes=ds.n_classes
            )
        )


def _early_stop_gap_idle(cfg: TrainConfig, ds: Dataset) -> bool:
    """Whether ``cfg`` stops early on a fairness gap ``ds`` does not report."""
    es = cfg.training.early_stopping
    return es.patience > 0 and es.metric in GROUP_METRICS and not reports_gaps(ds)


def idle_on_data(cfg: TrainConfig, ds: Dataset) -> list[str]:
    """The settings of ``cfg`` that do nothing on ``ds`` (what
    :func:`check_dataset_fits` refuses in new input, and skips for a stored
    config): a perturbing setting with no numeric feature to perturb, early
    stopping on a fairness gap ``ds`` does not report. Empty when none."""
    idle = list(_perturbing(cfg)) if not bool(ds.perturb_mask.any()) else []
    if _early_stop_gap_idle(cfg, ds):
        idle.append(f"training.early_stopping.metric {cfg.training.early_stopping.metric!r}")
    return idle


def perturbing_settings(cfg: TrainConfig) -> list[str]:
    """The settings of ``cfg`` that perturb inputs, as a refusal names them
    (``"penalties.input_noise 0.1"``; see :func:`check_dataset_fits`)."""
    return list(_perturbing(cfg))


#: The keys that ask for robust accuracy (``robust_every`` > 0 by default).
_ROBUST_KEYS = ("robust_every", "robust_eps", "robust_steps", "robust_samples")


def _perturbing(cfg: TrainConfig) -> dict[str, str]:
    """The settings of ``cfg`` that perturb inputs, each as a refusal names it
    and the section to remove: input noise, an attack in training, and robust
    accuracy when the config asks for it (a robust key off its default, or early
    stopping on ``robust_acc``). The default measurement asks nothing, so a
    dataset of categorical features trains by default, also from a config
    dumped whole (a registry version's, which a distilled student starts from)."""
    p, t = cfg.penalties, cfg.training
    found = {}
    if p.input_noise > 0:
        found[f"penalties.input_noise {p.input_noise}"] = "penalties.input_noise"
    if p.adversarial.method != "none" and p.adversarial.eps > 0:
        found[f"penalties.adversarial.method {p.adversarial.method!r}"] = "penalties.adversarial"
    asked = any(getattr(t, k) != default_value(f"training.{k}") for k in _ROBUST_KEYS) or (
        t.early_stopping.patience > 0 and t.early_stopping.metric == "robust_acc"
    )
    if t.robust_every > 0 and asked:
        found[f"training.robust_every {t.robust_every}"] = ""
    return found


def _no_numeric_feature(cfg: TrainConfig, ds: Dataset, keys: dict[str, str], data: str) -> str:
    """NO_NUMERIC_FEATURE_MSG for the perturbing ``keys`` of ``cfg`` (:func:`_perturbing`)."""
    effects, advice = [], []
    sections = [section for section in keys.values() if section]
    if sections:
        effects.append("training would run as without them")
        advice.append("remove " + " and ".join(sections))
    if "" in keys.values():
        effects.append("robust_acc would equal val_acc")
        advice.append("set training.robust_every to 0")
        t = cfg.training
        rest = [f"training.{k}" for k in _ROBUST_KEYS[1:] if k in t.model_fields_set]
        if rest:
            advice[-1] += f" (and leave out {', '.join(rest)})"
    schema = ds.schema
    numeric = [f.name for f in schema.numeric] if schema.image_shape is None else []
    why = (
        ONLY_SENSITIVE_NUMERIC.format(name=schema.sensitive)
        if numeric and set(numeric) == {schema.sensitive}
        else ALL_CATEGORICAL
    )
    return NO_NUMERIC_FEATURE_MSG.format(
        keys=", ".join(keys),
        data=data,
        why=why,
        what=" and ".join(effects),
        advice=", and ".join(advice),
    )


def reports_gaps(ds: Dataset) -> bool:
    """Whether a run on ``ds`` measures the fairness gaps (``dp_diff``, ``eo_diff``):
    it has a sensitive attribute and a two-class label."""
    return ds.train.s is not None and ds.n_classes == 2


def data_words(cfg: TrainConfig, ds: Dataset) -> tuple[str, str]:
    """How a refusal names the data of ``cfg`` and its sensitive attribute: ``("the
    file PATH" or "the built-in dataset 'NAME'", "the sensitive attribute 'COL'" or
    "no sensitive attribute")`` (the loader's name, ``csv``, says nothing)."""
    if cfg.dataset.name in FILE_DATASETS:
        data = f"the file {cfg.dataset.path}"
    else:
        data = f"the built-in dataset {cfg.dataset.name!r}"
    if ds.train.s is None:
        return data, "no sensitive attribute"
    return data, f"the sensitive attribute {ds.schema.sensitive!r}"


def resolve_device(name: str) -> torch.device:
    """Map ``training.device`` to a torch device (``auto``: CUDA when present)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError(CUDA_MISSING_MSG)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-step learning-rate schedule over the whole run (None: constant)."""
    t = cfg.training
    total = max(1, t.epochs * steps_per_epoch)
    if t.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if t.lr_schedule == "onecycle":
        # The cyclic schedule of "fast" adversarial training (Wong et al. 2020).
        # Momentum (SGD's, or Adam's beta1) cycles inversely to the learning
        # rate; with SGD it peaks at training.momentum, so that key counts.
        peak = t.momentum if t.optimizer == "sgd" else ONECYCLE_MAX_MOMENTUM
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=t.lr,
            total_steps=total,
            pct_start=ONECYCLE_WARMUP,
            max_momentum=peak,
            base_momentum=peak * ONECYCLE_MOMENTUM_DIP,
        )
    return None


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    t, wd = cfg.training, cfg.penalties.weight_decay
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "sgd":
        # torch SGD's weight decay is coupled (L2-style): wd * w is added to the
        # gradient and goes through the momentum buffer, so with momentum m it
        # shrinks weights about 1 / (1 - m) times (10x at 0.9) as fast as
        # AdamW's decoupled lr * wd * w at the same weight_decay. Kept as is:
        # stored SGD runs and the fused cohort's optimizer (cohort_optim) match it.
        return SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=wd)
    # 'adam' with decay means decoupled decay, i.e. AdamW; AdamW's own default
    # decay (0.01) is never applied silently: weight_decay defaults to 0.
    return AdamW(params, lr=t.lr, weight_decay=wd)


@dataclass
class _EarlyStop:
    metric: str
    mode: str
    patience: int
    min_delta: float
    best: float = math.nan
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value``; True when it is the best so far."""
        better = math.isnan(self.best) or (
            value < self.best - self.min_delta
            if self.mode == "min"
            else value > self.best + self.min_delta
        )
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
            if self.patience and self.bad_epochs >= self.patience:
                self.stopped = True
        return better


def kept_epoch(kept: selection.Selection | None, early: _EarlyStop, epoch: int) -> int:
    """The epoch whose weights a run keeps so far (what :meth:`Trainer.restore_kept`
    would load if it ended now): the fairness bound's choice, else early
    stopping's best epoch (with a patience), else the latest epoch.

    Reported in every epoch's row as ``kept_epoch``, so the results store, the
    sweep summary and the analysis judge a trial by the model it keeps.
    """
    if kept is not None:
        return kept.epoch
    if early.patience > 0 and early.best_epoch > 0:
        return early.best_epoch
    return epoch


def robust_decides(early: _EarlyStop) -> bool:
    """Whether early stopping reads ``robust_acc``: robust accuracy is then
    measured before early stopping decides, and early stopping decides only at
    the epochs it is measured at (one rule for the solo and fused trainers)."""
    return early.patience > 0 and early.metric == "robust_acc"


#: Index of each split in the seed of :func:`evaluation_generator`.
_SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}
#: Tags the evaluation stream, so it never equals the training generator's.
_EVALUATION_STREAM = 0x5EED_E7A1


def evaluation_generator(seed: int, epoch: int, split: str) -> torch.Generator:
    """The generator of the random starts of a robust-accuracy measurement.

    Seeded from ``training.seed``, the epoch and the split alone: the training
    generator is never drawn from, so ``robust_every`` and ``robust_samples``
    do not change the trained model, and a measurement's value does not depend
    on how many were taken before (nor on a restore in between). The fused
    trainer draws its members' starts from it too.
    """
    words = [_EVALUATION_STREAM, seed % 2**64, epoch, _SPLIT_INDEX.get(split, len(_SPLIT_INDEX))]
    state = np.random.SeedSequence(words).generate_state(1, np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state) % 2**63)


@dataclass
class RunResult:
    """What :func:`train` returns."""

    config: TrainConfig
    history: list[dict[str, float]]
    test_metrics: dict[str, float]
    model: nn.Module
    dataset: Dataset
    stopped_early: bool
    best_epoch: int
    elapsed_s: float = field(default=0.0)

    @property
    def final_metrics(self) -> dict[str, float]:
        """Last epoch's metrics merged with the ``test_`` metrics."""
        last = self.history[-1] if self.history else {}
        return {**last, **self.test_metrics}


class Trainer:
    """Trains one configuration epoch by epoch; see the module docstring.

    Args:
        config: a :class:`TrainConfig` or the nested dict a trial receives.
        dataset: an already loaded dataset (trials share one through Ray's
            object store); loaded from ``config.dataset`` when omitted.
        device: overrides ``training.device``.
        threshold_rows: overrides ``penalties.fairness.threshold_rows``, the
            rows post-processing thresholds are fitted on: ``"val"`` or
            ``"train+val"`` (the kept model's scores on both; see
            :data:`regtune.trainables.thresholds.FIT_ROWS`). ``"train+val"`` is
            refused while no thresholds are fitted (a method not ending in
            ``postprocess``, or kind ``none``), as the YAML key is.
        stored: ``config`` ran before or was checked already (a sweep's trial
            inside Ray, a resumed one's): a setting idle on ``dataset`` is
            logged (:data:`IDLE_ON_DATA_MSG`), not refused
            (:func:`check_dataset_fits`).
    """

    def __init__(
        self,
        config: TrainConfig | Mapping[str, Any],
        *,
        dataset: Dataset | None = None,
        device: str | torch.device | None = None,
        threshold_rows: str | None = None,
        stored: bool = False,
    ) -> None:
        if threshold_rows is not None and threshold_rows not in thresholds.FIT_ROWS:
            raise SpecError(
                thresholds.BAD_FIT_ROWS.format(rows=threshold_rows, allowed=thresholds.FIT_ROWS)
            )
        self.config = parse_train_config(config)
        cfg = self.config
        idle = None if threshold_rows in (None, "val") else idle_problem(cfg, THRESHOLD_ROWS)
        if idle is not None:
            # As the config's own key is refused by the YAML loaders; "val"
            # (the rows fitted on by default) changes nothing either way.
            raise SpecError(f"threshold_rows: {idle.message}")
        #: Rows :meth:`finish` fits post-processing thresholds on.
        self.threshold_rows = threshold_rows or cfg.penalties.fairness.threshold_rows
        self.dataset = dataset if dataset is not None else load_dataset(cfg.dataset)
        self.device = (
            torch.device(device) if device is not None else resolve_device(cfg.training.device)
        )
        ds = self.dataset
        check_dataset_fits(cfg, ds, stored=stored)
        unused = idle_on_data(cfg, ds) if stored else []
        if unused:
            _log.warning(IDLE_ON_DATA_MSG.format(keys=", ".join(unused)))
        torch.manual_seed(cfg.training.seed)
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.training.seed)
        self.model = build_model(
            cfg.model,
            input_shape=ds.input_shape,
            n_classes=ds.n_classes,
            spectral_norm=cfg.penalties.spectral_norm,
        ).to(self.device)
        self.optimizer = _make_optimizer(self.model, cfg)
        steps_per_epoch = -(-ds.train.x.shape[0] // cfg.training.batch_size)
        self.scheduler = _make_scheduler(self.optimizer, cfg, steps_per_epoch)
        es = cfg.training.early_stopping
        self.early = _EarlyStop(es.metric, es.mode, es.patience, es.min_delta)
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self._best_state: dict[str, torch.Tensor] | None = None
        self._robust: tuple[float, int] | None = None
        self._tensors = {
            split: (
                getattr(ds, split).x.to(self.device),
                getattr(ds, split).y.to(self.device),
                None if getattr(ds, split).s is None else getattr(ds, split).s.to(self.device),
            )
            for split in ("train", "val", "test")
        }
        self._mask = ds.perturb_mask.to(self.device)
        self._weight_penalised = any(penalties.weight_penalty_coefficients(cfg.penalties))
        self._static_facts: dict[str, float] | None = None
        n_constraints = len(ds.group_names) * (2 if cfg.penalties.fairness.kind == "eo" else 1)
        self._multipliers = torch.zeros(n_constraints, device=self.device)
        #: Why :meth:`finish` kept its epoch (a ``selection.KEPT_REASONS``
        #: entry); None until then or without ``penalties.fairness.bound``.
        self.kept_reason: str | None = None
        #: Per-group decision thresholds on the positive-class probability
        #: (index = group code), fitted by :meth:`finish` with a
        #: ``postprocess`` method; None otherwise. Saved in the checkpoint.
        self.thresholds: torch.Tensor | None = None
        #: Per-group threshold lotteries (``penalties.fairness.randomized``), as
        #: :func:`regtune.trainables.lottery_draws.pack` stores them;
        #: fitted by :meth:`finish` instead of :attr:`thresholds`. Saved in the
        #: checkpoint.
        self.lottery: torch.Tensor | None = None
        #: Temperatures dividing the logits (one, or one per group code),
        #: fitted by :meth:`finish` with ``training.calibration``; None when
        #: off or not kept. Saved in the checkpoint.
        self.temperatures: torch.Tensor | None = None

    # -- training ---------------------------------------------------------------

    @property
    def should_stop(self) -> bool:
        """True once early stopping fired or the configured epochs are done."""
        return self.early.stopped or self.epoch >= self.config.training.epochs

    def _batch_loss(
        self, xb: torch.Tensor, yb: torch.Tensor, sb: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The training objective of one batch, the logits it was computed on,
        and their plain mean cross-entropy when it was computed anyway."""
        p, model, g = self.config.penalties, self.model, self.generator
        adv, bounds, mask = p.adversarial, self.dataset.bounds, self._mask
        n_classes = self.dataset.n_classes
        if p.input_noise > 0:
            xb = penalties.add_input_noise(xb, p.input_noise, mask, g)
        # What every attack shares; eps is in input units, mask/bounds per dataset.
        common: dict[str, Any] = {
            "eps": adv.eps,
            "step_size": adv.step_size,
            "mask": mask,
            "bounds": bounds,
            "generator": g,
        }
        if adv.method == "fgsm_rs" and adv.eps > 0:
            xb = attacks.fgsm_rs(model, xb, yb, **common)
        elif adv.method == "pgd" and adv.eps > 0:
            xb = attacks.pgd(model, xb, yb, steps=adv.steps, **common)
        if adv.method == "trades" and adv.eps > 0:
            loss, logits = attacks.trades_loss(
                model,
                xb,
                yb,
                steps=adv.steps,
                beta=adv.beta,
                label_smoothing=p.label_smoothing,
                **common,
            )
        elif p.mixup > 0:
            onehot = F.one_hot(yb, n_classes).to(xb.dtype)
            if p.label_smoothing > 0:
                onehot = onehot * (1 - p.label_smoothing) + p.label_smoothing / n_classes
            xb, target = penalties.mixup(xb, onehot, p.mixup, g)
            logits = model(xb)
            loss = penalties.soft_cross_entropy(logits, target)
        else:
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=p.label_smoothing)
        # The epoch's train_loss reuses the objective's cross-entropy when they
        # coincide (no smoothing/mixup/TRADES): a second CE per batch costs ~3%.
        plain = (
            loss.detach()
            if adv.method != "trades" and p.mixup == 0 and p.label_smoothing == 0
            else None
        )
        if self._weight_penalised:
            loss = loss + penalties.weight_penalty(model, p)
        fair = p.fairness
        in_training = fair.training_method
        if fair.kind != "none" and fair.strength > 0 and sb is not None and in_training:
            prob = torch.softmax(logits, dim=1)[:, 1]
            if in_training == "lagrangian":
                return loss + self._lagrangian_term(prob, yb, sb), logits, plain
            term = (
                fairness.dp_penalty(prob, sb, temperature=fair.temperature)
                if fair.kind == "dp"
                else fairness.eo_penalty(prob, yb, sb, temperature=fair.temperature)
            )
            loss = loss + fair.strength * term
        return loss, logits, plain

    def _lagrangian_term(
        self, prob: torch.Tensor, yb: torch.Tensor, sb: torch.Tensor
    ) -> torch.Tensor:
        """``sum(multipliers * deviations)`` of the relaxed rates in this batch."""
        fair = self.config.penalties.fairness
        labels = yb if fair.kind == "eo" else None
        relaxed = fairness.sharpen(prob, fair.temperature)
        deviations = fairness.rate_deviations(relaxed, sb, len(self.dataset.group_names), labels)
        return (self._multipliers * deviations).sum()

    def _dual_step(self) -> None:
        """One dual-ascent step on the hard-prediction deviations of the whole
        training split. Per epoch, not per batch: batch rates of small groups
        (women with income >50K in Adult, ~20 a batch) are too noisy and the
        multipliers then oscillate."""
        fair = self.config.penalties.fairness
        x, y, s = self._tensors["train"]
        if s is None:
            return
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logits = torch.cat(
                    [self.model(x[i : i + EVAL_BATCH]) for i in range(0, x.shape[0], EVAL_BATCH)]
                )
        finally:
            self.model.train(was_training)
        positive = (logits.argmax(dim=1) == 1).to(logits.dtype)
        labels = y if fair.kind == "eo" else None
        hard = fairness.rate_deviations(positive, s, len(self.dataset.group_names), labels)
        self._multipliers = (self._multipliers + fair.dual_lr * hard).clamp(
            -fair.strength, fair.strength
        )

    def _train_epoch(self) -> float:
        x, y, s = self._tensors["train"]
        bs, n = self.config.training.batch_size, x.shape[0]
        max_norm = self.config.penalties.max_norm
        self.model.train()
        perm = torch.randperm(n, generator=self.generator).to(self.device)
        total = torch.zeros((), device=self.device)
        for start in range(0, n, bs):
            idx = perm[start : start + bs]
            yb = y[idx]
            loss, logits, plain = self._batch_loss(x[idx], yb, None if s is None else s[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            if max_norm > 0:
                penalties.apply_max_norm(self.model, max_norm)
            # Summed on the device; one sync per epoch, not per batch.
            if plain is None:
                total += F.cross_entropy(logits.detach(), yb, reduction="sum")
            else:
                total += plain * yb.shape[0]
        return float(total) / n

    def _robust_due(self) -> bool:
        return robust_due(self.epoch, self.config.training.robust_every, last=self.should_stop)

    def robust_accuracy(self, split: str) -> float:
        """PGD accuracy on (at most ``robust_samples`` rows of) a split, now.

        The attack's random starts come from :func:`evaluation_generator`
        (seed, epoch, split), never from the training generator: measuring
        robust accuracy, or how often, changes nothing in training.
        """
        t = self.config.training
        x, y, _ = self._tensors[split]
        x, y = x[: t.robust_samples], y[: t.robust_samples]
        return attacks.robust_accuracy(
            self.model,
            x,
            y,
            eps=t.robust_eps,
            steps=t.robust_steps,
            mask=self._mask,
            bounds=self.dataset.bounds,
            generator=evaluation_generator(t.seed, self.epoch, split),
            batch_size=EVAL_BATCH,
        )

    def _logits(self, split: str) -> torch.Tensor:
        """Logits on a split, divided by the fitted temperatures once there are any."""
        x, _, s = self._tensors[split]
        z = metrics.logits(self.model, x, batch_size=EVAL_BATCH)
        if self.temperatures is None:
            return z
        return calibration.scale_logits(z, self.temperatures, s)

    def _evaluate(self, split: str) -> dict[str, float]:
        _, y, s = self._tensors[split]
        raw = metrics.score_logits(self._logits(split), y, s)
        out = {
            "loss": raw["loss"],
            "acc": raw["acc"],
            "ece": raw["ece"],
            "brier": raw["brier"],
        }
        for key in ("dp_diff", "eo_diff"):
            if key in raw:
                out[key] = raw[key]
        return out

    def _model_facts(self) -> dict[str, float]:
        if self._static_facts is None:  # the architecture does not change
            self._static_facts = {
                "n_params": float(metrics.n_params(self.model)),
                "size_bytes": float(metrics.size_bytes(self.model)),
            }
        return {"sparsity": metrics.sparsity(self.model), **self._static_facts}

    def run_epoch(self) -> dict[str, float]:
        """Train one epoch, evaluate, update early stopping; return the metrics."""
        if self.should_stop:
            raise RuntimeError("the run is finished; check Trainer.should_stop first")
        started = time.perf_counter()
        train_loss = self._train_epoch()
        fair = self.config.penalties.fairness
        if fair.kind != "none" and fair.training_method == "lagrangian" and fair.strength > 0:
            self._dual_step()
        train_s = time.perf_counter() - started
        self.epoch += 1
        val = self._evaluate("val")
        row = epoch_metrics(self.epoch, train_loss, val)
        row.update(self._model_facts())
        es = self.early
        # Robust accuracy is measured after early stopping has decided, so that
        # the epoch it stops at is measured too; early stopping on robust_acc
        # itself needs it first, and then decides only at the epochs it is
        # measured at (a carried-forward value is no new evidence).
        robust_first = robust_decides(es)
        if robust_first and self._robust_due():
            self._robust = (self.robust_accuracy("val"), self.epoch)
            row["robust_acc"] = self._robust[0]
        value = row.get(es.metric)
        best = es.patience > 0 and value is not None and es.update(value, self.epoch)
        self.history.append(row)
        kept = self.kept_selection()
        # With a fairness bound the constraint decides which weights are kept;
        # early stopping still decides when to stop.
        if (kept is None and best) or (kept is not None and kept.epoch == self.epoch):
            self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        row["kept_epoch"] = float(kept_epoch(kept, es, self.epoch))
        if not robust_first and self._robust_due():
            self._robust = (self.robust_accuracy("val"), self.epoch)
        if self._robust is not None:
            row["robust_acc"], row["robust_acc_epoch"] = self._robust[0], float(self._robust[1])
        row["epoch_time_s"] = time.perf_counter() - started
        row["train_time_s"] = train_s
        return row

    def kept_selection(self) -> selection.Selection | None:
        """The epoch the fairness bound keeps so far (None without a bound)."""
        fair = self.config.penalties.fairness
        key = selection.gap_metric(fair.kind) if fair.kind != "none" else None
        # Post-processing alone: the bound is the thresholds' tolerance, and
        # the raw gap of an epoch says nothing about the thresholded one.
        if fair.training_method is None or fair.bound is None or key is None:
            return None
        if not self.history or key not in self.history[0]:
            return None
        return selection.select_epoch(
            self.history, gap_key=key, bound=fair.bound, margin=fair.margin
        )

    def restore_kept(self) -> dict[str, float]:
        """Put the model the run keeps in place: the first step of :meth:`finish`,
        for a caller that wants the final model without scoring the test split.

        Loads the kept epoch's weights (early stopping's best, or the fairness
        bound's choice, :meth:`kept_selection`; with neither, the current
        weights stay) and, with ``training.calibration``, fits their
        temperatures on validation (kept only when the validation ECE drops).
        Returns the calibration metrics (``val_ece_uncalibrated``,
        ``val_ece_calibrated``, ``calibration_kept``, ``temperature_<group>``);
        empty without calibration. Calling it again (or on a finished run
        restored from its checkpoint) gives the same weights and temperatures.
        """
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        if self.config.training.calibration == "none":
            return {}
        # Fitted on the unscaled logits: temperatures already in place (a
        # second call, a finished run's checkpoint) would otherwise be fitted
        # on top of themselves and then replace themselves.
        self.temperatures = None
        return self._calibrate()

    def finish(self) -> dict[str, float]:
        """Restore the kept weights and temperatures (:meth:`restore_kept`),
        fit the post-processing thresholds when configured, and score the test
        split: ``test_*`` metrics, their intervals, the reliability bins
        ``test_reliability.bNN.{conf,acc,count}`` and, with groups,
        ``test_acc_<group>`` (see :mod:`regtune.trainables.metric_names`)."""
        if not self.config.penalties.fairness.postprocess:
            # Thresholds restored from a run that fitted them, resumed without
            # post-processing, are stale: this run decides by the arg-max.
            self.thresholds = self.lottery = None
        calibrated = self.restore_kept()
        test = self._evaluate("test")
        out = {f"test_{k}": v for k, v in test.items()}
        out.update(calibrated)
        if self.config.penalties.fairness.postprocess:
            out.update({f"test_raw_{k}": out[f"test_{k}"] for k in ("acc", "dp_diff", "eo_diff")})
            out.update(self._postprocess())

        if self.config.training.robust_every > 0:
            out["test_robust_acc"] = self.robust_accuracy("test")
        out.update({f"test_{k}": v for k, v in self._model_facts().items()})
        kept = self.kept_selection()
        if kept is not None:
            out["kept_epoch"] = float(kept.epoch)
            out["kept_reason_code"] = float(selection.KEPT_REASONS.index(kept.reason))
            self.kept_reason = kept.reason
        out.update(self._test_intervals())
        out.update(self._test_calibration_and_groups())
        return out

    def _calibrate(self) -> dict[str, float]:
        """Fit temperatures on validation; keep them only if the validation ECE drops.

        A positive temperature (per group or not) changes no arg-max decision
        and no within-group order, so the decisions and any fairness gap of
        them stay exactly as they were (checked, not assumed).
        """
        _, y, s = self._tensors["val"]
        before = self._evaluate("val")
        per_group = self.config.training.calibration == "group_temperature"
        raw = self._logits("val")
        self.temperatures = calibration.fit_temperatures(
            raw, y, s if per_group else None, len(self.dataset.group_names) if per_group else 1
        )
        after = self._evaluate("val")
        same = torch.equal(raw.argmax(dim=1), self._logits("val").argmax(dim=1))
        kept = after["ece"] < before["ece"] and same
        out = {
            "val_ece_uncalibrated": before["ece"],
            "val_ece_calibrated": after["ece"],
            "calibration_kept": float(kept),
        }
        names = self.dataset.group_names if per_group else ["all"]
        for key, value in zip(group_keys(names), self.temperatures.tolist(), strict=True):
            out[f"temperature_{key}"] = value
        if not kept:
            self.temperatures = None
        return out

    def positive_scores(self, split: str) -> torch.Tensor:
        """The positive-class probability of each row of a split (binary tasks),
        from the temperature-scaled logits once temperatures are fitted: the
        scores thresholds are fitted on and applied to.

        Raises:
            ValueError: ``split`` is not ``train``, ``val`` or ``test``, or the
                task is not binary.
        """
        if split not in self._tensors:
            raise ValueError(UNKNOWN_SPLIT_MSG.format(split=split, allowed=tuple(self._tensors)))
        n = self.dataset.n_classes
        if n != 2:
            raise ValueError(NOT_BINARY_MSG.format(name=self.dataset.name, n=n))
        return self._logits(split).softmax(dim=1)[:, 1]

    def decisions(self, split: str) -> torch.Tensor:
        """The model's hard predictions on a split as a server would make
        them: arg-max, or the fitted per-group thresholds when present."""
        x, _, s = self._tensors[split]
        if s is not None and self.lottery is not None:
            cuts, weights = lottery_draws.unpack(self.lottery)
            scores = self.positive_scores(split)
            decided = lottery_draws.apply_lottery(scores, s, cuts, weights)
            return torch.from_numpy(decided).to(scores.device)
        if self.thresholds is None or s is None:
            return metrics.predict(self.model, x, batch_size=EVAL_BATCH)
        return thresholds.apply_thresholds(self.positive_scores(split), s, self.thresholds)

    def _postprocess(self) -> dict[str, float]:
        """Fit per-group thresholds on validation (or train+val, see
        ``threshold_rows``); the test decisions use them. With
        ``penalties.fairness.robust_quantile`` the fit is the robust one
        (seeded by ``training.seed``) and ``val_postprocess_robust_gap``
        reports its resampled quantile.

        The arg-max test metrics stay as ``test_raw_acc`` / ``_dp_diff`` /
        ``_eo_diff``; ``test_acc``, ``test_dp_diff``, ``test_eo_diff`` become
        those of the thresholded decisions (what a server returns).
        """
        # The registry maps a version's stored settings through the same helper.
        wanted = ThresholdSettings.from_config(self.config, rows=self.threshold_rows)
        if wanted is None:  # a postprocess method with kind 'none' (YAML refuses it as idle)
            raise ValueError(thresholds.BAD_KIND.format(kind=self.config.penalties.fairness.kind))
        _, y_val, s_val = self._tensors["val"]
        assert s_val is not None  # checked in __init__: fairness needs groups
        scores = self.positive_scores("val")
        if wanted.rows == "train+val":
            _, y_train, s_train = self._tensors["train"]
            assert s_train is not None
            scores = torch.cat([self.positive_scores("train"), scores])
            y_val, s_val = torch.cat([y_train, y_val]), torch.cat([s_train, s_val])
        names = self.dataset.group_names
        thresholds.warn_fit_cells(y_val, s_val, names, kind=wanted.kind, rows=wanted.rows)
        fit: thresholds.ThresholdFit | threshold_lottery.LotteryFit
        if wanted.randomized:
            fit = wanted.fit_lottery(scores, y_val, s_val, len(names))
            self.lottery = lottery_draws.pack(fit.thresholds, fit.weights)
            self.thresholds = None
        else:
            fit = wanted.fit(scores, y_val, s_val, len(names))
            self.thresholds = torch.tensor(fit.thresholds, dtype=torch.float64)
            self.lottery = None
        _, y, s = self._tensors["test"]
        assert s is not None
        pred = self.decisions("test")
        out = {
            "val_postprocess_acc": fit.accuracy,
            "val_postprocess_gap": fit.gap,
            "postprocess_feasible": float(fit.feasible),
            "postprocess_fit_rows": float(y_val.shape[0]),
            **(
                {"val_postprocess_robust_gap": fit.robust_gap}
                if isinstance(fit, thresholds.ThresholdFit) and fit.robust_gap is not None
                else {}
            ),
            "test_acc": float((pred == y).double().mean()),
            "test_dp_diff": fairness.dp_difference(pred, s),
            "test_eo_diff": fairness.eo_difference(y, pred, s),
        }
        keys = group_keys(names)
        if isinstance(fit, threshold_lottery.LotteryFit):  # each group's lowest, highest, count
            out["val_postprocess_realized_gap"] = fit.realized_gap
            out["val_postprocess_realized_acc"] = fit.realized_accuracy
            for key, cuts in zip(keys, fit.thresholds, strict=True):
                out[f"threshold_low_{key}"], out[f"threshold_high_{key}"] = min(cuts), max(cuts)
                out[f"threshold_count_{key}"] = float(len(cuts))
        else:
            for key, value in zip(keys, fit.thresholds, strict=True):
                out[f"threshold_{key}"] = value
        return out

    def _test_intervals(self) -> dict[str, float]:
        """Bootstrap intervals of the test split's fairness metrics and
        per-group rates (binary tasks with a sensitive attribute)."""
        _, y, s = self._tensors["test"]
        if s is None or self.dataset.n_classes != 2:
            return {}
        y_pred = self.decisions("test")
        intervals = fairness_intervals(
            y, y_pred, s, self.dataset.group_names, seed=self.config.training.seed
        )
        return {f"test_{k}": v for k, v in intervals.items()}

    def _test_calibration_and_groups(self) -> dict[str, float]:
        """The kept model's reliability bins on the test split (from the same,
        temperature-scaled probabilities as ``test_ece``) and, with a sensitive
        attribute, each group's accuracy of the decisions a server would make
        (names: :mod:`regtune.trainables.metric_names`)."""
        _, y, s = self._tensors["test"]
        out = metrics.reliability_metrics(self._logits("test").softmax(dim=1), y, "test")
        if s is not None:
            names = self.dataset.group_names
            out.update(metrics.group_accuracy(y, self.decisions("test"), s, names, split="test"))
        return out

    # -- checkpoints --------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly."""
        state: dict[str, Any] = {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "early": vars(self.early).copy(),
            "history": self.history,
            "robust": list(self._robust) if self._robust is not None else None,
            "best_state": self._best_state,
            "multipliers": self._multipliers,
            "thresholds": self.thresholds,
            "lottery": self.lottery,
            "temperatures": self.temperatures,
            "fingerprint": self.dataset.fingerprint,
            "config": self.config.model_dump(mode="json"),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: Mapping[str, Any], *, source: str = "<memory>") -> None:
        """Continue from :meth:`state_dict` output.

        The dataset and the architecture (``model``, ``penalties.spectral_norm``)
        must match the checkpoint's. Other hyperparameters may differ: that is
        how PBT changes regularization strength during training. The current
        config's learning rate and weight decay then replace the stored ones.

        Raises:
            CheckpointError: another dataset or architecture, or a stored field
                of the wrong kind or out of range (named with what it holds and
                what is allowed; nothing is restored then).
        """
        self._check_state(state, source)
        theirs = state.get("config") or {}
        mine = self.config.model_dump(mode="json")
        checks = (
            ("dataset", state.get("fingerprint"), self.dataset.fingerprint),
            ("model", theirs.get("model"), mine["model"]),
            (
                "penalties.spectral_norm",
                (theirs.get("penalties") or {}).get("spectral_norm"),
                mine["penalties"]["spectral_norm"],
            ),
        )
        for what, stored, current in checks:
            if stored != current:
                raise CheckpointError(CHECKPOINT_MISMATCH_MSG.format(path=source, what=what))
        self._check_best_state(state.get("best_state"), source)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(
                CHECKPOINT_MISMATCH_MSG.format(path=source, what=f"model state: {exc}")
            ) from exc
        if theirs != mine:
            stored_lr = (theirs.get("training") or {}).get("lr")
            self._apply_hyperparameters(float(stored_lr) if stored_lr else None)
        self.epoch = int(state["epoch"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.early = _EarlyStop(**state["early"])
        self.history = [dict(r) for r in state["history"]]
        robust = state.get("robust")
        self._robust = (float(robust[0]), int(robust[1])) if robust else None
        stored_multipliers = state.get("multipliers")
        # Another fairness kind's multipliers (other constraints; _check_state) start
        # again from zero; the same kind's were checked to fit.
        if stored_multipliers is not None and stored_multipliers.shape == self._multipliers.shape:
            self._multipliers = stored_multipliers.to(self.device)
        best = state.get("best_state")
        self._best_state = dict(best) if best else None
        # A rule fitted by a run with post-processing is stale for a config
        # without it (a resume that switched the method): decide by the arg-max.
        fits = self.config.penalties.fairness.postprocess
        stored = state.get("thresholds")
        self.thresholds = (
            stored.double().cpu() if fits and isinstance(stored, torch.Tensor) else None
        )
        lottery = state.get("lottery")
        self.lottery = (
            lottery.double().cpu() if fits and isinstance(lottery, torch.Tensor) else None
        )
        temps = state.get("temperatures")
        self.temperatures = temps.double().cpu() if isinstance(temps, torch.Tensor) else None

    def _check_state(self, state: Mapping[str, Any], source: str) -> None:
        """Refuse (CheckpointError naming the field, what it holds and what is
        allowed) a stored state whose fields :meth:`load_state_dict` reads are of
        the wrong kind or out of range; checked before anything is restored."""

        def refuse(name: str, value: Any, allowed: str) -> CheckpointError:
            return bad_field(source, f"tree.{name}", value, allowed)

        def need(name: str, ok: Callable[[Any], bool], allowed: str, optional: bool = False) -> Any:
            value = state.get(name, MISSING)
            if (value is MISSING and not optional) or (value is not MISSING and not ok(value)):
                raise refuse(name, value, allowed)
            return value

        epochs = self.config.training.epochs
        epoch = need(
            "epoch",
            lambda v: _is_int(v) and 0 <= v <= epochs,
            f"a whole number from 0 to {epochs} (training.epochs of the resuming configuration)",
        )
        config = need("config", _is_mapping, "a mapping (the configuration it was trained with)")
        for section in ("model", "penalties", "training"):
            if section in config and not _is_mapping(config[section]):
                raise refuse(f"config.{section}", config[section], "a mapping")
        lr = (config.get("training") or {}).get("lr")
        if lr is not None and not (_is_number(lr) and lr > 0):
            raise refuse("config.training.lr", lr, "a positive number")
        need("model", _is_tensor_map, "a mapping of parameter names to tensors")
        need("optimizer", _is_mapping, "a mapping (torch optimizer state)")
        need("scheduler", lambda v: v is None or _is_mapping(v), "null or a mapping", True)
        for name, optional in (("generator", False), ("torch_rng", False), ("cuda_rng", True)):
            need(name, _is_rng_state, "a uint8 tensor (a torch RNG state)", optional)
        self._check_early(
            need("early", _is_mapping, "a mapping (early-stopping state)"), epoch, refuse
        )
        history = need("history", _is_list, f"a list of {epoch} rows, one per epoch trained")
        if len(history) != epoch:
            raise refuse("history", history, f"a list of {epoch} rows (tree.epoch), one per epoch")
        for i, row in enumerate(history):
            allowed = f"a mapping of metric names to numbers with {', '.join(_HISTORY_KEYS)}"
            if not _is_mapping(row) or not all(
                isinstance(k, str) and _is_number(v) for k, v in row.items()
            ):
                raise refuse(f"history[{i}]", row, allowed)
            for key in _HISTORY_KEYS:
                if key not in row:
                    raise refuse(f"history[{i}].{key}", MISSING, allowed)
            if row["epoch"] != i + 1:
                raise refuse(f"history[{i}].epoch", row["epoch"], f"{i + 1} (its row's epoch)")
        need(
            "robust",
            lambda v: (
                v is None or (_is_list(v) and len(v) == 2 and _is_number(v[0]) and _is_int(v[1]))
            ),
            "null or [robust accuracy, the epoch it was measured at]",
            True,
        )
        need("best_state", lambda v: v is None or _is_tensor_map(v), "null or a model state", True)
        # Stored under another fairness kind (PBT or --set moving it between dp and
        # eo), the multipliers belong to other constraints and start again from
        # zero (load_state_dict); under the same kind they must fit this run's.
        same_kind = _stored_fairness_kind(config) == self.config.penalties.fairness.kind
        shape = tuple(self._multipliers.shape)
        need(
            "multipliers",
            lambda v: (
                isinstance(v, torch.Tensor)
                and v.is_floating_point()
                and v.dim() == 1
                and (not same_kind or tuple(v.shape) == shape)
            ),
            f"a float tensor of shape {shape} (one Lagrange multiplier per fairness constraint)",
            True,
        )
        for name in ("thresholds", "temperatures"):
            need(
                name,
                lambda v: (
                    v is None
                    or (isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() == 1)
                ),
                "null or a 1-d floating-point tensor",
                True,
            )
        need(
            "lottery",
            lambda v: v is None or lottery_draws.valid_packed(v),
            "null or a (groups, k, 2) float tensor of (threshold in [0, 1], weight >= 0) "
            "pairs whose weights sum to 1 per group",
            True,
        )

    @staticmethod
    def _check_early(
        early: Mapping[str, Any], epoch: int, refuse: Callable[[str, Any, str], CheckpointError]
    ) -> None:
        """The stored early-stopping state: exactly :class:`_EarlyStop`'s fields."""
        kinds: dict[str, tuple[Callable[[Any], bool], str]] = {
            "metric": (lambda v: isinstance(v, str), "a metric name"),
            "mode": (lambda v: v in ("min", "max"), "'min' or 'max'"),
            "patience": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
            "min_delta": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
            "best": (_is_number, "a number (NaN before the first epoch)"),
            "best_epoch": (lambda v: _is_int(v) and 0 <= v <= epoch, f"0 to {epoch} (tree.epoch)"),
            "bad_epochs": (lambda v: _is_int(v) and v >= 0, "a whole number >= 0"),
            "stopped": (lambda v: isinstance(v, bool), "true or false"),
        }
        for key in early:
            if key not in kinds:
                raise refuse(f"early.{key}", early[key], f"only the fields {', '.join(kinds)}")
        for key, (ok, allowed) in kinds.items():
            if key not in early:
                raise refuse(f"early.{key}", MISSING, allowed)
            if not ok(early[key]):
                raise refuse(f"early.{key}", early[key], allowed)

    def _check_best_state(self, best: Mapping[str, Any] | None, source: str) -> None:
        """The kept epoch's weights must fit this model (same names and shapes)."""
        if not best:
            return
        mine = self.model.state_dict()
        for name, value in best.items():
            if name not in mine or tuple(value.shape) != tuple(mine[name].shape):
                allowed = "this model's parameters (the same names and shapes)"
                raise bad_field(source, f"tree.best_state.{name}", value, allowed)
        if set(best) != set(mine):
            missing = sorted(set(mine) - set(best))
            raise bad_field(source, f"tree.best_state.{missing[0]}", MISSING, "a tensor")

    def _apply_hyperparameters(self, stored_lr: float | None) -> None:
        """Push this config's optimizer settings into restored optimizer state.

        Under a constant schedule the learning rate is simply replaced. Under
        cosine or one-cycle the restored schedule keeps its position and is
        rescaled by ``lr / stored_lr``: every learning rate either schedule
        produces is proportional to its peak ``training.lr``, so the run then
        follows exactly the schedule it would have followed had it started
        with the new ``lr`` (how PBT's perturbation of ``training.lr`` takes
        effect mid-run).
        """
        t = self.config.training
        onecycle = False
        for group in self.optimizer.param_groups:
            group["weight_decay"] = self.config.penalties.weight_decay
            if t.optimizer == "sgd" and "max_momentum" in group:  # one-cycle
                group["max_momentum"] = t.momentum
                group["base_momentum"] = t.momentum * ONECYCLE_MOMENTUM_DIP
                onecycle = True
            elif t.optimizer == "sgd":
                group["momentum"] = t.momentum
            if self.scheduler is None:
                group["lr"] = t.lr
        if onecycle and isinstance(self.scheduler, torch.optim.lr_scheduler.OneCycleLR):
            _onecycle_momentum_now(self.scheduler)
        if self.scheduler is not None and stored_lr and stored_lr != t.lr:
            _rescale_schedule(self.optimizer, self.scheduler, t.lr / stored_lr)
        es = t.early_stopping
        self.early.metric, self.early.mode = es.metric, es.mode
        self.early.patience, self.early.min_delta = es.patience, es.min_delta

    def save(self, directory: str | Path) -> Path:
        """Write a checkpoint directory (safetensors + JSON, atomic)."""
        return save_tree(self.state_dict(), directory)

    def restore(self, directory: str | Path) -> None:
        """Continue from a checkpoint directory written by :meth:`save`."""
        self.load_state_dict(load_tree(directory), source=str(directory))


#: Keys every stored history row must hold: the epoch (the fairness bound's
#: selection, the row count), the train loss (a sweep's ``--resume`` matches
#: checkpoints to stored rows by it) and the validation accuracy (selection).
_HISTORY_KEYS = ("epoch", "train_loss", "val_acc")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _stored_fairness_kind(config: Mapping[str, Any]) -> Any:
    """``penalties.fairness.kind`` of a stored config (``none`` when not set, as
    the config's default)."""
    penalties = config.get("penalties") or {}
    fairness = penalties.get("fairness") if isinstance(penalties, Mapping) else None
    return fairness.get("kind", "none") if isinstance(fairness, Mapping) else "none"


def _is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _is_tensor_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


def _is_rng_state(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


#: Per-group learning-rate values that torch's schedulers derive the next
#: learning rate from (``initial_lr``: cosine's base; ``max_lr``/``min_lr``:
#: one-cycle's peak and floor); all scale with the peak ``training.lr``.
_SCHEDULE_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")


def epoch_metrics(epoch: int, train_loss: float, val: Mapping[str, float]) -> dict[str, float]:
    """The metrics every epoch reports from its mean train loss and the
    validation scores of :func:`metrics.score_logits` (the fairness gaps
    when the validation split has groups); the model facts come on top."""
    row: dict[str, float] = {
        "epoch": float(epoch),
        "train_loss": train_loss,
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "gap": val["loss"] - train_loss,
        "ece": val["ece"],
        "brier": val["brier"],
    }
    for key in ("dp_diff", "eo_diff"):
        if key in val:
            row[key] = val[key]
    return row


def _onecycle_momentum_now(scheduler: torch.optim.lr_scheduler.OneCycleLR) -> None:
    """Set each group's current momentum to what one-cycle gives at its
    position under the group's (new) ``max_momentum``/``base_momentum``, so a
    restored run's next step already uses a new ``training.momentum``, as a
    fresh run with it would. torch's ``get_lr`` writes the momentum as it
    computes the step's learning rates (which it only returns)."""
    if scheduler.last_epoch > scheduler.total_steps:
        return
    with warnings.catch_warnings():
        # "To get the last learning rate computed by the scheduler, use get_last_lr()".
        warnings.simplefilter("ignore", UserWarning)
        scheduler.get_lr()


def _rescale_schedule(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, ratio: float
) -> None:
    """Multiply every learning rate a restored schedule holds by ``ratio``."""
    for group in optimizer.param_groups:
        for key in _SCHEDULE_KEYS:
            if key in group:
                group[key] *= ratio
    scheduler.base_lrs = [lr * ratio for lr in scheduler.base_lrs]
    last = getattr(scheduler, "_last_lr", None)
    if last is not None:
        scheduler._last_lr = [lr * ratio for lr in last]


def train(
    config: TrainConfig | Mapping[str, Any],
    *,
    dataset: Dataset | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    device: str | None = None,
    threshold_rows: str | None = None,
) -> RunResult:
    """Train one configuration to the end (or early stop) and score the test split.

    Args:
        on_epoch: called with each epoch's metrics (progress display, Tune).
        threshold_rows: passed to :class:`Trainer`.
        checkpoint_dir: where checkpoints go (every ``checkpoint_every`` epochs
            and at the end); with ``resume`` an existing one is continued.
    """
    started = time.perf_counter()
    if checkpoint_dir is not None and Path(checkpoint_dir).is_file():
        raise SpecError(CHECKPOINT_NOT_A_DIR_MSG.format(path=checkpoint_dir))
    if checkpoint_dir is not None and not resume and Path(checkpoint_dir).exists():
        # Never overwrite a stored run by accident.
        raise SpecError(CHECKPOINT_EXISTS_MSG.format(path=checkpoint_dir))
    if resume and (checkpoint_dir is None or not Path(checkpoint_dir).exists()):
        # A typo in the path must not silently start the run from scratch.
        raise SpecError(NOTHING_TO_RESUME_MSG.format(path=checkpoint_dir))
    trainer = Trainer(config, dataset=dataset, device=device, threshold_rows=threshold_rows)
    if resume and checkpoint_dir is not None:
        trainer.restore(checkpoint_dir)
    while not trainer.should_stop:
        row = trainer.run_epoch()
        if on_epoch is not None:
            on_epoch(row)
        due = checkpoint_every > 0 and trainer.epoch % checkpoint_every == 0
        if checkpoint_dir is not None and (due or trainer.should_stop):
            trainer.save(checkpoint_dir)
    test = trainer.finish()
    if checkpoint_dir is not None and (
        trainer.thresholds is not None
        or trainer.lottery is not None
        or trainer.temperatures is not None
    ):
        trainer.save(checkpoint_dir)  # fitted thresholds/temperatures belong with the weights
    return RunResult(
        config=trainer.config,
        history=trainer.history,
        test_metrics=test,
        model=trainer.model,
        dataset=trainer.dataset,
        stopped_early=trainer.early.stopped,
        best_epoch=int(test.get("kept_epoch", 0)) or trainer.early.best_epoch or trainer.epoch,
        elapsed_s=time.perf_counter() - started,
    )
