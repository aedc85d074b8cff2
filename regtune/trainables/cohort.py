"""Cohorts: K training runs advanced together, epoch by epoch, in one process.

A cohort is what a fused sweep worker holds instead of one
:class:`~regtune.trainables.loop.Trainer`. Every member keeps the identity of
a trial: its own metrics each epoch (exactly the keys ``Trainer.run_epoch``
returns), its own early stopping, its own checkpoint (exactly the format of
``Trainer.state_dict``, so a solo ``Trainer`` can continue it) and its own
``finish``. Two implementations share the :class:`Cohort` protocol:

- :class:`SequentialCohort`: one ``Trainer`` per member, run one after
  another. Works for every configuration; the reference for exactness.
- :class:`~regtune.trainables.cohort_fused.FusedCohort`: MLP, logistic
  regression or CNN members of one shape trained as ONE batched model
  (stacked parameters, batched matmuls / grouped convolutions, one fused
  optimizer step), see :mod:`regtune.trainables.cohort_fused`. MLP members
  of one depth but different widths share it too, zero-padded to the
  widest (:mod:`regtune.trainables.cohort_pad`).

:func:`make_cohort` partitions the members with :func:`fusable` (which pads
widths together only where a measured cost rule says it pays) and returns
one cohort over all of them (fused groups plus groups of one)::

    cohort = make_cohort({"a": cfg_a, "b": cfg_b, "c": cfg_c})
    while True:
        rows = cohort.run_epoch()          # {member_id: metrics} of the members trained
        if not rows:
            break
        for mid in rows:
            if cohort.should_stop(mid):
                test = cohort.finish(mid)   # also takes mid out of the batch

Random numbers (the exactness rule): a solo ``Trainer`` seeds
``torch.manual_seed(seed)`` (weight init, then dropout masks) and a CPU
generator seeded by ``seed`` (shuffling, noise, mixup, attack starts). In a
cohort every member keeps BOTH streams of its own: its shuffle generator, and
a private copy of the process-wide RNG as it stood after its own weight init.
Each member's batches are gathered with its own permutation, so members need
not share a seed or a data order, and the process-wide RNG is left as the
caller had it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import torch

from regtune.errors import SpecError
from regtune.trainables.config import TrainConfig, parse_train_config
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.loop import Trainer, resolve_device

__all__ = [
    "CNN_FUSES_ON_CPU",
    "Cohort",
    "SequentialCohort",
    "fusable",
    "fuse_key",
    "make_cohort",
    "pad_key",
    "parse_members",
    "preserved_rng",
    "shared_dataset",
]

EMPTY_COHORT = "a cohort needs at least one member; got 0 configurations"
BAD_MEMBER_ID = "member ids must be non-empty strings; got {mid!r}"
UNKNOWN_MEMBER = "no member {mid!r} in this cohort; members: {known}"
MIXED_DATASETS = (
    "the members of one cohort given one dataset must all name the same dataset; "
    "got {names}. Pass no dataset (each group loads its own) or split the configurations."
)


@runtime_checkable
class Cohort(Protocol):
    """K members trained together; each member behaves as a solo ``Trainer``.

    ``members`` lists the member ids, in the order given, dropped ones
    excluded. A member leaves training when it is dropped, finished, or its
    ``should_stop`` turns true; ``state_dict`` and ``finish`` keep working
    for it afterwards (dropped members keep their last state).
    """

    members: list[str]

    def run_epoch(self) -> dict[str, dict[str, float]]:
        """Train one epoch for every member still training; ``{}`` when none is."""
        ...

    def drop(self, member_id: str) -> None:
        """Take a member out of training (a scheduler stopped it); the rest go on."""
        ...

    def state_dict(self, member_id: str) -> dict[str, Any]:
        """The member's state in exactly the format of ``Trainer.state_dict``."""
        ...

    def load_state_dict(
        self, member_id: str, state: Mapping[str, Any], *, source: str = "<memory>"
    ) -> None:
        """Continue a member from ``Trainer.state_dict`` output (same rules as
        ``Trainer.load_state_dict``)."""
        ...

    def finish(self, member_id: str) -> dict[str, float]:
        """``Trainer.finish`` for that member (test metrics); it stops training."""
        ...

    def should_stop(self, member_id: str) -> bool:
        """The member's early stopping fired or its epochs are done."""
        ...


# -- partition ------------------------------------------------------------------


def _dataset_key(cfg: TrainConfig) -> str:
    return json.dumps(cfg.dataset.model_dump(mode="json"), sort_keys=True)


#: Whether CNN members fuse on a CPU by default. Measured
#: (``benchmarks/cohort_speed.py``, digits CNN width 64, one thread): fused
#: K = 4 / 16 / 64 took 1.00 / 1.04 / 1.2x the CPU time of one Trainer after
#: another (convolutions are compute-bound; batching removes no work), so
#: they train one after another there. On CUDA they fuse (unmeasured here).
CNN_FUSES_ON_CPU = False


def fuse_key(
    cfg: TrainConfig,
    device: str | torch.device | None = None,
    *,
    cnn_on_cpu: bool = CNN_FUSES_ON_CPU,
) -> tuple[Any, ...] | None:
    """What members must share to train as one batched model; None: they
    train alone (cannot fuse, or fusing does not pay).

    Shared: the dataset, the device, the architecture and its shapes (arch,
    width, depth), the batch size and the optimizer family (``adam``/``adamw``
    are one). Members with equal keys always train as one batched model;
    MLP members of other widths may join them padded (see :func:`pad_key`
    and :func:`fusable`). ``cnn`` members fuse with grouped convolutions
    (:mod:`regtune.trainables.cohort_cnn`), only at one width, and on a CPU
    only with ``cnn_on_cpu`` (see :data:`CNN_FUSES_ON_CPU`).
    Per member: seed, learning rate and schedule, epochs, momentum, L1, L2,
    elastic net, weight decay, max-norm, dropout p, label smoothing, input
    noise, mixup, early stopping, robust-accuracy and calibration settings,
    fairness post-processing and bounds.

    Not fused (each member trains alone): spectral norm, adversarial
    training (method other than ``none`` with ``eps > 0``) and in-training
    fairness terms (``penalty`` / ``lagrangian`` with ``strength > 0``).
    """
    p = cfg.penalties
    fair = p.fairness
    if cfg.model.arch not in ("mlp", "logreg", "cnn") or p.spectral_norm:
        return None
    if p.adversarial.method != "none" and p.adversarial.eps > 0:
        return None
    if fair.kind != "none" and fair.strength > 0 and fair.training_method is not None:
        return None
    dev = torch.device(device) if device is not None else resolve_device(cfg.training.device)
    if cfg.model.arch == "cnn" and dev.type == "cpu" and not cnn_on_cpu:
        return None
    shape: tuple[Any, ...] = (cfg.model.arch, cfg.model.width)  # cnn: depth unused
    if cfg.model.arch == "logreg":
        shape = ("logreg",)
    elif cfg.model.arch == "mlp":
        shape = ("mlp", cfg.model.width, cfg.model.depth)
    family = "sgd" if cfg.training.optimizer == "sgd" else "adamw"
    return (_dataset_key(cfg), str(dev), shape, cfg.training.batch_size, family)


def pad_key(
    cfg: TrainConfig,
    device: str | torch.device | None = None,
    *,
    cnn_on_cpu: bool = CNN_FUSES_ON_CPU,
) -> tuple[Any, ...] | None:
    """What members must share to train in one batched model, width padding
    allowed: :func:`fuse_key` with the MLP's width left out (None: cannot fuse).

    Members with equal pad keys but different widths CAN share one batch, the
    narrower ones padded with zero hidden units (exact, see
    :mod:`regtune.trainables.cohort_pad`); :func:`fusable` decides whether
    that pays.
    """
    key = fuse_key(cfg, device, cnn_on_cpu=cnn_on_cpu)
    if key is None:
        return None
    dataset, dev, shape, batch_size, family = key
    if shape[0] == "mlp":
        shape = ("mlp", shape[2])
    return (dataset, dev, shape, batch_size, family)


def fusable(
    configs: Mapping[str, TrainConfig | Mapping[str, Any]],
    *,
    device: str | torch.device | None = None,
    dataset: Dataset | None = None,
    pad: bool = True,
    cnn_on_cpu: bool = CNN_FUSES_ON_CPU,
) -> list[list[str]]:
    """Partition member ids into groups that train as one batched model.

    Members with equal :func:`fuse_key` always share a group. With ``pad``,
    MLP members that differ only in width (equal :func:`pad_key`) share one
    too where padding the narrower ones to the widest pays, by the measured
    cost rule :func:`~regtune.trainables.cohort_pad.width_groups` (``dataset``
    gives it the input and output sizes; digits' are assumed without it).
    Members that cannot fuse form groups of one, and so do CNN members on a
    CPU unless ``cnn_on_cpu`` (see :data:`CNN_FUSES_ON_CPU`). Every id appears once;
    groups come in first-seen order of their keys.

    Raises:
        SpecError: an invalid configuration or member id.
    """
    from regtune.trainables.cohort_pad import DEFAULT_IO_FEATURES, width_groups

    parsed: dict[str, TrainConfig] = {}
    keyed: dict[Any, list[str]] = {}
    for mid, raw in configs.items():
        _check_id(mid)
        cfg = parsed[mid] = parse_train_config(raw)
        key = (pad_key if pad else fuse_key)(cfg, device, cnn_on_cpu=cnn_on_cpu)
        keyed.setdefault(("solo", mid) if key is None else key, []).append(mid)
    io = DEFAULT_IO_FEATURES
    if dataset is not None:
        io = math.prod(dataset.input_shape) + dataset.n_classes
    groups: list[list[str]] = []
    for key, mids in keyed.items():
        cfg = parsed[mids[0]]
        if not pad or key[0] == "solo" or cfg.model.arch != "mlp":
            groups.append(mids)
            continue
        widths = {m: parsed[m].model.width for m in mids}
        groups.extend(width_groups(widths, cfg.model.depth, io))
    return groups


def _check_id(mid: object) -> None:
    if not isinstance(mid, str) or not mid:
        raise SpecError(BAD_MEMBER_ID.format(mid=mid))


def parse_members(
    configs: Mapping[str, TrainConfig | Mapping[str, Any]],
) -> dict[str, TrainConfig]:
    """Validate member ids and configurations (at least one member).

    Raises:
        SpecError: no member, a bad id, or an invalid configuration.
    """
    if not configs:
        raise SpecError(EMPTY_COHORT)
    out: dict[str, TrainConfig] = {}
    for mid, raw in configs.items():
        _check_id(mid)
        out[mid] = parse_train_config(raw)
    return out


def shared_dataset(configs: Mapping[str, TrainConfig], dataset: Dataset | None) -> Dataset:
    """The one dataset all members train on (loaded once when not given).

    Raises:
        SpecError: the members name different datasets.
    """
    keys = {_dataset_key(c) for c in configs.values()}
    if len(keys) > 1:
        names = sorted({c.dataset.name for c in configs.values()})
        raise SpecError(MIXED_DATASETS.format(names=", ".join(names) if len(names) > 1 else keys))
    if dataset is not None:
        return dataset
    return load_dataset(next(iter(configs.values())).dataset)


# -- process-wide RNG bookkeeping -------------------------------------------------


@contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Leave the process-wide CPU (and CUDA) RNG as it was on entry."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)


# -- the sequential cohort --------------------------------------------------------


class SequentialCohort:
    """One :class:`Trainer` per member, trained one after another.

    The exact reference for every configuration: each member's metrics and
    checkpoints equal a solo ``Trainer``'s, since each member runs with its
    own copy of the process-wide RNG swapped in (dropout draws from it).

    Args:
        configs: ``{member_id: config}``; ids are non-empty strings.
        dataset: one loaded dataset for every member (loaded once per
            distinct dataset config when omitted).
        device: overrides each member's ``training.device``.
        stored: the configs ran or were checked already (a sweep's trials
            inside Ray): see ``Trainer(stored=...)``.

    Raises:
        SpecError: no member, a bad id or config, or ``dataset`` given for
            members that name different datasets.
    """

    def __init__(
        self,
        configs: Mapping[str, TrainConfig | Mapping[str, Any]],
        *,
        dataset: Dataset | None = None,
        device: str | torch.device | None = None,
        stored: bool = False,
    ) -> None:
        parsed = parse_members(configs)
        if dataset is not None:
            shared_dataset(parsed, dataset)
        self.members: list[str] = list(parsed)
        self._trainers: dict[str, Trainer] = {}
        self._rng: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._training: set[str] = set(parsed)
        loaded: dict[str, Dataset] = {}
        for mid, cfg in parsed.items():
            ds = dataset
            if ds is None:
                key = _dataset_key(cfg)
                if key not in loaded:
                    loaded[key] = load_dataset(cfg.dataset)
                ds = loaded[key]
            dev = (
                torch.device(device) if device is not None else resolve_device(cfg.training.device)
            )
            with preserved_rng(dev):
                trainer = Trainer(cfg, dataset=ds, device=dev, stored=stored)
                self._rng[mid] = _capture(trainer.device)
            self._trainers[mid] = trainer

    def trainer(self, member_id: str) -> Trainer:
        """The member's own ``Trainer`` (its model, config, history)."""
        if member_id not in self._trainers:
            raise KeyError(UNKNOWN_MEMBER.format(mid=member_id, known=", ".join(self._trainers)))
        return self._trainers[member_id]

    @contextmanager
    def _as_member(self, member_id: str) -> Iterator[Trainer]:
        trainer = self.trainer(member_id)
        with preserved_rng(trainer.device):
            _restore(self._rng[member_id], trainer.device)
            try:
                yield trainer
            finally:
                self._rng[member_id] = _capture(trainer.device)

    def run_epoch(self) -> dict[str, dict[str, float]]:
        """One epoch for each member still training (see :class:`Cohort`)."""
        rows: dict[str, dict[str, float]] = {}
        for mid in self.members:
            if mid not in self._training or self._trainers[mid].should_stop:
                continue
            with self._as_member(mid) as trainer:
                rows[mid] = trainer.run_epoch()
        return rows

    def drop(self, member_id: str) -> None:
        """Stop training ``member_id``; its state stays readable."""
        self.trainer(member_id)
        self._training.discard(member_id)
        if member_id in self.members:
            self.members.remove(member_id)

    def should_stop(self, member_id: str) -> bool:
        """``Trainer.should_stop`` of the member."""
        return self.trainer(member_id).should_stop

    def state_dict(self, member_id: str) -> dict[str, Any]:
        """``Trainer.state_dict`` of the member (its own RNG included)."""
        with self._as_member(member_id) as trainer:
            return trainer.state_dict()

    def load_state_dict(
        self, member_id: str, state: Mapping[str, Any], *, source: str = "<memory>"
    ) -> None:
        """``Trainer.load_state_dict`` for the member."""
        with self._as_member(member_id) as trainer:
            trainer.load_state_dict(state, source=source)

    def finish(self, member_id: str) -> dict[str, float]:
        """``Trainer.finish`` of the member; it then trains no more."""
        with self._as_member(member_id) as trainer:
            out = trainer.finish()
        self._training.discard(member_id)
        return out


def _capture(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _restore(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


# -- several cohorts behind one -----------------------------------------------------


class _CohortSet:
    """Several cohorts (fused groups, groups of one) answering as one."""

    def __init__(self, parts: list[Cohort]) -> None:
        self._parts = parts
        self._owner: dict[str, Cohort] = {m: c for c in parts for m in c.members}
        self.members: list[str] = [m for c in parts for m in c.members]

    def _part(self, member_id: str) -> Cohort:
        if member_id not in self._owner:
            raise KeyError(UNKNOWN_MEMBER.format(mid=member_id, known=", ".join(self._owner)))
        return self._owner[member_id]

    def run_epoch(self) -> dict[str, dict[str, float]]:
        rows: dict[str, dict[str, float]] = {}
        for part in self._parts:
            rows.update(part.run_epoch())
        return rows

    def drop(self, member_id: str) -> None:
        self._part(member_id).drop(member_id)
        if member_id in self.members:
            self.members.remove(member_id)

    def should_stop(self, member_id: str) -> bool:
        return self._part(member_id).should_stop(member_id)

    def state_dict(self, member_id: str) -> dict[str, Any]:
        return self._part(member_id).state_dict(member_id)

    def load_state_dict(
        self, member_id: str, state: Mapping[str, Any], *, source: str = "<memory>"
    ) -> None:
        self._part(member_id).load_state_dict(member_id, state, source=source)

    def finish(self, member_id: str) -> dict[str, float]:
        return self._part(member_id).finish(member_id)


def make_cohort(
    configs: Mapping[str, TrainConfig | Mapping[str, Any]],
    *,
    dataset: Dataset | None = None,
    device: str | torch.device | None = None,
    fuse: bool = True,
    pad: bool = True,
    cnn_on_cpu: bool = CNN_FUSES_ON_CPU,
    stored: bool = False,
) -> Cohort:
    """One cohort over ``configs``: fused groups where :func:`fusable` allows.

    Args:
        configs: ``{member_id: config}`` (a :class:`TrainConfig` or the nested
            dict a trial receives).
        dataset: the loaded dataset, shared by every member (they must all
            name the same one); loaded once per dataset config when omitted.
        device: overrides ``training.device`` for every member.
        fuse: False runs every member as a group of one (the reference).
        pad: False fuses only members of one width (no width padding).
        cnn_on_cpu: fuse CNN members on a CPU too (off by default: it does
            not pay there, see :data:`CNN_FUSES_ON_CPU`).
        stored: the configs ran or were checked already (a fused sweep's
            trials inside Ray): a setting idle on the data is logged, not
            refused (``Trainer(stored=...)``).

    Raises:
        SpecError: no member, a bad id or config, or mixed datasets with one
            ``dataset`` given.
    """
    from regtune.trainables.cohort_fused import FusedCohort  # imports this module

    parsed = parse_members(configs)
    if dataset is not None:
        shared_dataset(parsed, dataset)
    by_data: dict[str, dict[str, TrainConfig]] = {}
    for mid, cfg in parsed.items():
        by_data.setdefault(_dataset_key(cfg), {})[mid] = cfg
    parts: list[Cohort] = []
    for cfgs in by_data.values():
        ds = dataset if dataset is not None else load_dataset(next(iter(cfgs.values())).dataset)
        groups = (
            fusable(cfgs, device=device, dataset=ds, pad=pad, cnn_on_cpu=cnn_on_cpu)
            if fuse
            else [[m] for m in cfgs]
        )
        for group in groups:
            sub = {m: cfgs[m] for m in group}
            if len(group) > 1 and fuse_key(sub[group[0]], device, cnn_on_cpu=True) is not None:
                parts.append(FusedCohort(sub, dataset=ds, device=device, stored=stored))
            else:
                parts.append(SequentialCohort(sub, dataset=ds, device=device, stored=stored))
    return parts[0] if len(parts) == 1 else _CohortSet(parts)
