"""K MLP / logistic-regression / CNN members trained as ONE batched model.

Every member's parameters are one row of a ``(K, P)`` tensor (the solo
model's parameters, flattened in ``model.parameters()`` order); a layer is
a view of it, ``(K, out, in)``, applied with one ``baddbmm`` (a CNN's convs
are one grouped ``conv2d``, see :mod:`regtune.trainables.cohort_cnn`). The
objective is the sum of the members' own objectives, so one backward gives
each member exactly its own gradient, and one fused optimizer step
(:mod:`regtune.trainables.cohort_optim`) updates every row with its own
learning rate, weight decay and momentum.

MLP members of different widths share the batch at the widest member's
layout, the narrower ones zero-padded (:mod:`regtune.trainables.cohort_pad`).
A padded hidden unit has zero weights in and out and a zero bias: its
activation is ``relu(0) = 0`` and every gradient of its weights is exactly
0; L1 (``sign(0) = 0``), L2 and weight decay of 0 are 0; AdamW's moments
stay 0 and its update is ``0 / (0 + eps) = 0``; SGD's momentum buffer stays
0; max-norm scales a zero row by 1 and sees the real rows' norms (the
padding adds zeros); dropout masks are drawn at the member's own width
(padded units keep a multiplier that meets a zero activation). So the
padding stays exactly 0 and a member's state, metrics and checkpoint are
its own model's: rows are stripped of the padding whenever they leave the
batch, and the batch narrows when its widest member leaves.

Per member (see :func:`regtune.trainables.cohort.fuse_key` for what must
be shared): seed, learning rate and schedule, epochs, L1 / L2 / elastic
net, weight decay, max-norm, dropout p, label smoothing, input noise,
mixup, early stopping, robust-accuracy and calibration settings.

Exactness: each member draws from its own two random streams in the order
a solo ``Trainer`` does (shuffle, noise and mixup from its generator;
dropout masks from its private copy of the process-wide RNG), so its
batches, masks and mixes are the solo run's. On CPU the forward pass and
the AdamW step give the solo's numbers bit for bit; a batched weight
gradient (``bmm``) sums in another order than the solo's ``mm`` for some
shapes, so metrics agree to about 1e-5 relative after a few epochs (tested
per regularizer to 1e-4, see docs/fused.md). A padded member's matmuls add
exact zeros, possibly in another summation order than its narrow solo
matmuls: the same tolerance, tested per regularizer. A CNN member's grouped
convolution too: metrics to 1e-4, weights to 1e-5 in norm.

Robust accuracy (PGD on validation, ``training.robust_every``) is batched
too: the members due at an epoch that share ``robust_steps`` and
``robust_samples`` attack together, each from its own evaluation generator
(``loop.evaluation_generator``, as solo) with its own ``robust_eps``.
``finish`` hands the member to a solo ``Trainer`` restored from
:meth:`FusedCohort.state_dict` (calibration, post-processing, test scores
are the solo code).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regtune.errors import SpecError
from regtune.trainables import attacks, metrics, selection
from regtune.trainables.cohort import (
    UNKNOWN_MEMBER,
    pad_key,
    parse_members,
    preserved_rng,
    shared_dataset,
)
from regtune.trainables.cohort_cnn import CNN_DROPOUT_LAYER, cnn_forward
from regtune.trainables.cohort_optim import FusedAdamW, FusedSGD, MemberSchedule
from regtune.trainables.cohort_pad import Layout
from regtune.trainables.config import TrainConfig, robust_due
from regtune.trainables.data import Dataset
from regtune.trainables.loop import (
    EVAL_BATCH,
    Trainer,
    _EarlyStop,
    check_dataset_fits,
    epoch_metrics,
    evaluation_generator,
    kept_epoch,
    resolve_device,
    robust_decides,
)
from regtune.trainables.models import build_model
from regtune.trainables.penalties import (
    feature_mask,
    random_uniform_like,
    weight_penalty_coefficients,
)

__all__ = ["FusedCohort"]

NOT_FUSABLE = (
    "member {mid!r} cannot train in a fused cohort ({why}); run it alone "
    "(make_cohort does so by itself)"
)
MIXED_GROUP = (
    "the members of one fused cohort must share the dataset, device, architecture "
    "(arch; an MLP's depth, a CNN's width), batch size and optimizer family; "
    "{a!r} has ({ka}), {b!r} has ({kb}). Partition them with fusable() or use make_cohort()."
)


def _describe(key: tuple[Any, ...] | None) -> str:
    """A pad key without its dataset, in words."""
    if key is None:
        return "no fuse key"
    _, device, shape, batch_size, family = key
    arch = shape[0]
    if shape[0] == "mlp":
        arch = f"mlp depth {shape[1]}"
    elif shape[0] == "cnn":
        arch = f"cnn width {shape[1]}"
    return f"device {device}, {arch}, batch_size {batch_size}, optimizer {family}"


def _why_not(cfg: TrainConfig) -> str:
    p = cfg.penalties
    if cfg.model.arch not in ("mlp", "logreg", "cnn"):
        return f"model.arch {cfg.model.arch!r}; fused: mlp, logreg, cnn"
    if p.spectral_norm:
        return "penalties.spectral_norm"
    if p.adversarial.method != "none" and p.adversarial.eps > 0:
        return f"penalties.adversarial.method {p.adversarial.method!r}"
    return f"penalties.fairness.method {p.fairness.method!r} trains with a fairness term"


def _not_k(w: Tensor) -> tuple[int, ...]:
    """Every dimension of a stacked parameter but the member axis."""
    return tuple(range(1, w.ndim))


def _col(values: list[float], device: torch.device) -> Tensor:
    """Python doubles -> a float32 ``(K, 1, 1)`` column (cast once, as torch casts scalars)."""
    return torch.tensor(values, dtype=torch.float64).float().to(device)[:, None, None]


def _kept_selection(m: _Member) -> selection.Selection | None:
    """``Trainer.kept_selection``: the epoch a fairness bound keeps so far."""
    fair = m.cfg.penalties.fairness
    key = selection.gap_metric(fair.kind) if fair.kind != "none" else None
    if fair.training_method is None or fair.bound is None or key is None:
        return None
    if not m.history or key not in m.history[0]:
        return None
    return selection.select_epoch(m.history, gap_key=key, bound=fair.bound, margin=fair.margin)


@dataclass
class _Member:
    """Everything one member owns that is not a row of the batch."""

    cfg: TrainConfig
    shell: nn.Module
    #: The member's own (solo) parameter layout; the batch may be wider.
    layout: Layout
    #: ``n_params`` and ``size_bytes`` of the member's own model.
    static: dict[str, float]
    generator: torch.Generator
    private: torch.Generator
    cuda_state: Tensor | None
    schedule: MemberSchedule
    export: MemberSchedule
    early: _EarlyStop
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    robust: tuple[float, int] | None = None
    best_state: dict[str, Tensor] | None = None
    frozen: dict[str, Any] | None = None
    dropped: bool = False
    finished: Trainer | None = None
    thresholds: Tensor | None = None
    lottery: Tensor | None = None
    temperatures: Tensor | None = None

    @property
    def should_stop(self) -> bool:
        return self.early.stopped or self.epoch >= self.cfg.training.epochs


class FusedCohort:
    """Members of one :func:`~regtune.trainables.cohort.fuse_key` as one batched model.

    Implements :class:`~regtune.trainables.cohort.Cohort`; see the module
    docstring for what is per member and how exact it is.

    Raises:
        SpecError: no member, a bad id or config, a member that cannot fuse,
            or members that do not share one fuse key (mixed datasets, shapes,
            batch sizes, ...).
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
        first_id = next(iter(parsed))
        #: The configs ran or were checked already (``check_dataset_fits(stored=True)``).
        self._stored = stored
        # Asked for explicitly: CNN members fuse on a CPU too.
        keys = {mid: pad_key(cfg, device, cnn_on_cpu=True) for mid, cfg in parsed.items()}
        for mid, cfg in parsed.items():
            if keys[mid] is None:
                raise SpecError(NOT_FUSABLE.format(mid=mid, why=_why_not(cfg)))
        first_key = keys[first_id]
        ds = shared_dataset(parsed, dataset)
        for cfg in parsed.values():
            check_dataset_fits(cfg, ds, stored=stored)
        for mid, key in keys.items():
            if key != first_key:
                a, b = _describe(first_key), _describe(key)
                raise SpecError(MIXED_GROUP.format(a=first_id, ka=a, b=mid, kb=b))
        cfg0 = parsed[first_id]
        self.dataset = ds
        self.device = (
            torch.device(device) if device is not None else resolve_device(cfg0.training.device)
        )
        self.members: list[str] = list(parsed)
        self._arch = cfg0.model.arch
        self._batch_size = cfg0.training.batch_size
        n_train = ds.train.x.shape[0]
        self._steps_per_epoch = -(-n_train // self._batch_size)
        self._sgd = cfg0.training.optimizer == "sgd"
        self._tensors = {
            split: (
                getattr(ds, split).x.to(self.device),
                getattr(ds, split).y.to(self.device),
                None if getattr(ds, split).s is None else getattr(ds, split).s.to(self.device),
            )
            for split in ("train", "val", "test")
        }
        self._mask = ds.perturb_mask.to(self.device)
        self._feature_mask = self._mask.to(torch.float32).unsqueeze(0)
        self._m: dict[str, _Member] = {}
        rows: dict[str, dict[str, Any]] = {}
        for mid, cfg in parsed.items():
            self._m[mid], rows[mid] = self._new_member(cfg)
        self._ids: list[str] = []
        self._stack(list(parsed), rows)

    # -- members ----------------------------------------------------------------

    def _new_member(self, cfg: TrainConfig) -> tuple[_Member, dict[str, Any]]:
        """Initialise one member as ``Trainer.__init__`` would."""
        ds, seed = self.dataset, cfg.training.seed
        with preserved_rng(self.device):
            torch.manual_seed(seed)
            shell = build_model(cfg.model, input_shape=ds.input_shape, n_classes=ds.n_classes).to(
                self.device
            )
            private = torch.Generator(device="cpu")
            private.set_state(torch.get_rng_state())
            cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        es = cfg.training.early_stopping
        member = _Member(
            cfg=cfg,
            shell=shell,
            layout=Layout.of(shell),
            static={
                "n_params": float(metrics.n_params(shell)),
                "size_bytes": float(metrics.size_bytes(shell)),
            },
            generator=torch.Generator(device="cpu").manual_seed(seed),
            private=private,
            cuda_state=cuda,
            schedule=MemberSchedule(shell, cfg, self._steps_per_epoch),
            export=MemberSchedule(shell, cfg, self._steps_per_epoch),
            early=_EarlyStop(es.metric, es.mode, es.patience, es.min_delta),
        )
        flat = torch.cat([p.detach().reshape(-1) for p in shell.parameters()])
        opt = FusedSGD.zeros(flat[None]) if self._sgd else FusedAdamW.zeros(flat[None])
        return member, {"params": flat, "opt": opt}

    def _member(self, member_id: str) -> _Member:
        if member_id not in self._m:
            raise KeyError(UNKNOWN_MEMBER.format(mid=member_id, known=", ".join(self._m)))
        return self._m[member_id]

    def _row(self, member_id: str) -> dict[str, Any]:
        """The member's flat parameters and optimizer state in its own layout
        (the padding stripped), from the batch or frozen."""
        if member_id in self._ids:
            k = self._ids.index(member_id)
            index = torch.tensor([k], device=self.device)
            cols = self._embed[k]
            return {"params": self._own_row(k), "opt": self._opt.select(index, cols)}
        frozen = self._m[member_id].frozen
        assert frozen is not None
        return frozen

    def _stack(self, ids: list[str], rows: Mapping[str, dict[str, Any]]) -> None:
        """Make ``ids`` the batch, in that order, from their rows."""
        self._ids = list(ids)
        if not ids:
            self._flat = torch.zeros(0, 0, device=self.device)
            self._embed = []
            return
        # The batch runs at its widest member's layout; narrower rows are
        # embedded with zero padding (cohort_pad), which stays exactly zero.
        self._layout = max((self._m[m].layout for m in ids), key=lambda lay: lay.size)
        self._embed = [self._index(self._m[m].layout) for m in ids]
        self._flat = self._padded([rows[m]["params"][None] for m in ids])
        opts = [rows[m]["opt"] for m in ids]
        if self._sgd:
            self._opt: FusedAdamW | FusedSGD = FusedSGD(
                self._padded([o.buf for o in opts]), [s for o in opts for s in o.steps]
            )
        else:
            self._opt = FusedAdamW(
                self._padded([o.exp_avg for o in opts]),
                self._padded([o.exp_avg_sq for o in opts]),
                [s for o in opts for s in o.steps],
            )
        self._n_weights = [self._m[m].layout.n_weights for m in ids]
        self._padding = [self._layout.n_weights - n for n in self._n_weights]
        cfgs = [self._m[m].cfg for m in ids]

        def col(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=torch.float64).float().to(self.device)[:, None, None]

        p = [c.penalties for c in cfgs]
        n_classes = self.dataset.n_classes
        self._dropout = [c.model.dropout if c.model.arch != "logreg" else 0.0 for c in cfgs]
        self._dropout_keep = col([1.0 - p for p in self._dropout])
        self._smooth = [x.label_smoothing for x in p]
        self._smooth_keep = col([1.0 - s for s in self._smooth])
        self._smooth_add = col([s / n_classes for s in self._smooth])
        self._noise = [x.input_noise for x in p]
        self._noise_col = col(self._noise)
        self._mixup = [x.mixup for x in p]
        coefs = [weight_penalty_coefficients(x) for x in p]
        self._c1 = [c[0] for c in coefs]
        self._c2 = [c[1] for c in coefs]
        self._c1_col, self._c2_col = col(self._c1)[:, 0, 0], col(self._c2)[:, 0, 0]
        self._max_norm = [x.max_norm for x in p]
        self._max_norm_col = col([m if m > 0 else math.inf for m in self._max_norm])

    def _index(self, layout: Layout) -> Tensor | None:
        """Where a member of ``layout`` lies in the batch's row (None: no padding)."""
        index = layout.embed_index(self._layout)
        return None if index is None else index.to(self.device)

    def _padded(self, rows: list[Tensor]) -> Tensor:
        """Stack one-row tensors in the members' own layouts into the batch
        layout, zero where a member is padded (``self._embed`` in order)."""
        if all(i is None for i in self._embed):
            return torch.cat(rows).to(self.device)
        out = torch.zeros(len(rows), self._layout.size, device=self.device)
        for k, (row, index) in enumerate(zip(rows, self._embed, strict=True)):
            if index is None:
                out[k] = row[0]
            else:
                out[k, index] = row[0].to(self.device)
        return out

    def _own_row(self, k: int) -> Tensor:
        """Batch member ``k``'s parameters in its own layout (a copy)."""
        index = self._embed[k]
        return self._flat[k].clone() if index is None else self._flat[k, index]

    def _leave_batch(self, leaving: list[str]) -> None:
        """Freeze ``leaving`` members' rows and restack the rest."""
        if not leaving:
            return
        rows = {m: self._row(m) for m in self._ids}
        for mid in leaving:
            self._m[mid].frozen = rows[mid]
        self._stack([m for m in self._ids if m not in leaving], rows)

    # -- the batched model ---------------------------------------------------------

    def _views(self, flat: Tensor) -> list[Tensor]:
        """Each parameter (batch layout) as a ``(K, *shape)`` view of the ``(K, P)`` rows."""
        return self._layout.views(flat)

    def _layers(self, flat: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``(weight, bias)`` views per layer."""
        views = self._views(flat)
        return [(views[i], views[i + 1]) for i in range(0, len(views), 2)]

    def _forward(
        self, layers: list[tuple[Tensor, Tensor]], x: Tensor, masks: list[Tensor | None] | None
    ) -> Tensor:
        """Logits ``(K, B, C)`` of every member on its own ``x`` ``(K, B, F)``."""
        if self._arch == "cnn":
            return cnn_forward(layers, x, self.dataset.input_shape, masks)
        h = x
        for i, (w, b) in enumerate(layers):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < len(layers) - 1:
                h = torch.relu(h)
                mask = masks[i] if masks is not None else None
                if mask is not None:
                    h = h * mask
        return h

    def _dropout_masks(self, rows: int) -> list[Tensor | None] | None:
        """Each hidden layer's dropout multipliers, drawn as each member's solo
        ``F.dropout`` draws them (same stream, same shape, same order)."""
        if not any(p > 0 for p in self._dropout):
            return None
        out: list[Tensor | None] = []
        for layer in self._dropout_layers():
            width = self._layout.shapes[2 * layer][0]
            mask = torch.ones(len(self._ids), rows, width, device=self.device)
            for k, mid in enumerate(self._ids):
                p = self._dropout[k]
                if p <= 0:
                    continue
                m = self._m[mid]
                own = m.layout.shapes[2 * layer][0]
                if own == width:
                    self._member_mask(m, mask[k], p)
                else:
                    # Solo draws (rows, own width): same stream, same shape;
                    # the padded units' multipliers stay 1 (their activation is 0).
                    drawn = torch.ones(rows, own, device=self.device)
                    self._member_mask(m, drawn, p)
                    mask[k, :, :own] = drawn
            # F.dropout divides the 0/1 draws by (1 - p) in the input's dtype.
            out.append(mask.div_(self._dropout_keep))
        return out

    def _dropout_layers(self) -> list[int]:
        """The layers (index in the ``(weight, bias)`` list) whose output the
        solo model's dropouts act on, in forward order."""
        if self._arch == "cnn":
            return [CNN_DROPOUT_LAYER]
        return list(range(len(self._layout.shapes) // 2 - 1))

    def _member_mask(self, m: _Member, out: Tensor, p: float) -> None:
        """Draw the member's 0/1 keep mask into ``out`` (rows, width)."""
        if self.device.type == "cuda":
            # Solo CUDA dropout is torch's fused kernel on the default CUDA
            # generator: draw it there with the member's state swapped in.
            gen = torch.cuda.default_generators[self.device.index or torch.cuda.current_device()]
            outer = gen.get_state()
            assert m.cuda_state is not None
            gen.set_state(m.cuda_state)
            try:
                kept = torch.native_dropout(torch.ones_like(out), p, True)[1]
                m.cuda_state = gen.get_state()
            finally:
                gen.set_state(outer)
            out.copy_(kept)
            return
        out.bernoulli_(1 - p, generator=m.private)

    # -- training ------------------------------------------------------------------

    def _train_epoch(self) -> Tensor:
        """One epoch of every batch member; their summed plain cross-entropy (K,)."""
        x, y, _ = self._tensors["train"]
        n, bs = x.shape[0], self._batch_size
        members = [self._m[mid] for mid in self._ids]
        k_all = len(members)
        n_classes = self.dataset.n_classes
        perms = torch.stack([torch.randperm(n, generator=m.generator) for m in members])
        perms = perms.to(self.device)
        total = torch.zeros(k_all, device=self.device)
        any_noise, any_mix = any(s > 0 for s in self._noise), any(a > 0 for a in self._mixup)
        any_smooth = any(s > 0 for s in self._smooth)
        any_c1, any_c2 = any(c > 0 for c in self._c1), any(c > 0 for c in self._c2)
        any_max_norm = any(c > 0 for c in self._max_norm)
        for start in range(0, n, bs):
            idx = perms[:, start : start + bs]
            rows = idx.shape[1]
            xb, yb = x[idx], y[idx]
            if any_noise:
                xb = xb + self._noise_draws(members, rows, xb.shape[2])
            target = F.one_hot(yb, n_classes).to(xb.dtype)
            if any_smooth:
                target = target * self._smooth_keep + self._smooth_add
            if any_mix:
                xb, target = self._mix(members, xb, target)
            # One leaf per layer tensor, sharing the batch's storage: a leaf per
            # slice of one (K, P) leaf would make autograd zero-fill and add a
            # (K, P) gradient per slice.
            leaves = [t.detach().requires_grad_(True) for t in self._views(self._flat)]
            layers = [(leaves[i], leaves[i + 1]) for i in range(0, len(leaves), 2)]
            logits = self._forward(layers, xb, self._dropout_masks(rows))
            logp = F.log_softmax(logits, dim=2)
            objective = -(target * logp).sum(dim=2).mean(dim=1)
            if any_c1 or any_c2:
                objective = objective + self._weight_penalty(layers, any_c1, any_c2)
            grads = torch.autograd.grad(objective.sum(), leaves)
            grad = torch.cat([g.reshape(k_all, -1) for g in grads], dim=1)
            values = [
                m.schedule.values(step) for m, step in zip(members, self._opt.steps, strict=True)
            ]
            self._opt.step(self._flat, grad, values)
            if any_max_norm:
                self._apply_max_norm()
            with torch.no_grad():
                total += -logp.gather(2, yb.unsqueeze(2)).sum(dim=(1, 2))
        return total

    def _noise_draws(self, members: list[_Member], rows: int, width: int) -> Tensor:
        """``std * N(0, 1) * mask`` per member, from each member's generator."""
        noise = torch.zeros(len(members), rows, width)
        for k, m in enumerate(members):
            if self._noise[k] > 0:
                noise[k] = torch.randn((rows, width), generator=m.generator)
        return noise.to(self.device) * self._noise_col * self._feature_mask

    def _mix(self, members: list[_Member], xb: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Mixup of the members with ``mixup > 0`` (``penalties.mixup``'s draws)."""
        rows = xb.shape[1]
        lam = [1.0] * len(members)
        perm = torch.arange(rows).repeat(len(members), 1)
        for k, m in enumerate(members):
            alpha = self._mixup[k]
            if alpha > 0:
                seed = int(torch.randint(0, 2**62, (1,), generator=m.generator).item())
                lam[k] = float(np.random.default_rng(seed).beta(alpha, alpha))
                perm[k] = torch.randperm(rows, generator=m.generator)
        perm = perm.to(self.device)
        keep = torch.tensor(lam, dtype=torch.float64).float().to(self.device)[:, None, None]
        other = torch.tensor([1.0 - v for v in lam], dtype=torch.float64).float()
        other = other.to(self.device)[:, None, None]
        x_perm = xb.gather(1, perm.unsqueeze(2).expand_as(xb))
        t_perm = target.gather(1, perm.unsqueeze(2).expand_as(target))
        return keep * xb + other * x_perm, keep * target + other * t_perm

    def _weight_penalty(
        self, layers: list[tuple[Tensor, Tensor]], any_c1: bool, any_c2: bool
    ) -> Tensor:
        total = torch.zeros(len(self._ids), device=self.device)
        for w, _ in layers:
            if any_c1:
                total = total + self._c1_col * w.abs().sum(dim=_not_k(w))
            if any_c2:
                total = total + self._c2_col * w.pow(2).sum(dim=_not_k(w))
        return total

    @torch.no_grad()
    def _apply_max_norm(self) -> None:
        """``penalties.apply_max_norm`` (torch.renorm's rule) per member row:
        each output unit's incoming weights (a conv's whole output filter)."""
        for layer, _ in self._layers(self._flat):
            w = layer.flatten(2)  # a view: (K, out, everything else)
            norm = torch.linalg.vector_norm(w, 2, dim=2, keepdim=True)
            cap = self._max_norm_col
            factor = torch.where(norm > cap, cap / (norm + 1e-7), torch.ones_like(norm))
            w.mul_(factor)

    def _logits(self, split: str) -> Tensor:
        """Every batch member's eval-mode logits on a split, (K, n, C)."""
        x, _, _ = self._tensors[split]
        k = len(self._ids)
        with torch.no_grad():
            parts = [
                self._forward(
                    self._layers(self._flat), x[i : i + EVAL_BATCH].expand(k, -1, -1), None
                )
                for i in range(0, x.shape[0], EVAL_BATCH)
            ]
        return torch.cat(parts, dim=1)

    def _load_shell(self, m: _Member, flat: Tensor) -> nn.Module:
        lay = m.layout
        with torch.no_grad():
            for p, s, shape in zip(m.shell.parameters(), lay.slices, lay.shapes, strict=True):
                p.copy_(flat[s].view(shape))
        return m.shell

    def run_epoch(self) -> dict[str, dict[str, float]]:
        """One epoch for every member still training (``Trainer.run_epoch`` rows).

        ``epoch_time_s`` and ``train_time_s`` are the cohort's times divided
        by the number of members trained (each member's share).
        """
        if not self._ids:
            return {}
        started = time.perf_counter()
        totals = self._train_epoch().tolist()
        train_s = time.perf_counter() - started
        n = self._tensors["train"][0].shape[0]
        _, y_val, s_val = self._tensors["val"]
        val_logits = self._logits("val")
        sparse = self._small_weights()
        rows: dict[str, dict[str, float]] = {}
        for k, mid in enumerate(self._ids):
            m = self._m[mid]
            m.epoch += 1
            train_loss = totals[k] / n
            val = metrics.score_logits(val_logits[k], y_val, s_val)
            row = epoch_metrics(m.epoch, train_loss, val)
            row.update({"sparsity": sparse[k] / self._n_weights[k], **m.static})
            rows[mid] = row
        # Early stopping on robust_acc needs it first, and decides only at the
        # epochs it is measured at (as solo: loop.robust_decides).
        first = [
            k
            for k, mid in enumerate(self._ids)
            if robust_decides(self._m[mid].early) and self._robust_due(self._m[mid])
        ]
        for k, acc in self._robust_accuracies(first, "val").items():
            m = self._m[self._ids[k]]
            m.robust = (acc, m.epoch)
            rows[self._ids[k]]["robust_acc"] = acc
        for k, mid in enumerate(self._ids):
            m, row = self._m[mid], rows[mid]
            es = m.early
            value = row.get(es.metric)
            best = es.patience > 0 and value is not None and es.update(value, m.epoch)
            m.history.append(row)
            kept = _kept_selection(m)
            # With a fairness bound the constraint decides which weights are kept.
            if (kept is None and best) or (kept is not None and kept.epoch == m.epoch):
                m.best_state = self._state_of(m, self._own_row(k))
            row["kept_epoch"] = float(kept_epoch(kept, es, m.epoch))
        # Robust accuracy last, as solo (after early stopping knows the last epoch).
        due = [
            k
            for k, mid in enumerate(self._ids)
            if not robust_decides(self._m[mid].early) and self._robust_due(self._m[mid])
        ]
        for k, value in self._robust_accuracies(due, "val").items():
            m = self._m[self._ids[k]]
            m.robust = (value, m.epoch)
        for mid, row in rows.items():
            m = self._m[mid]
            if m.robust is not None:
                row["robust_acc"], row["robust_acc_epoch"] = m.robust[0], float(m.robust[1])
        elapsed = time.perf_counter() - started
        for row in rows.values():
            row["epoch_time_s"] = elapsed / len(rows)
            row["train_time_s"] = train_s / len(rows)
        self._leave_batch([mid for mid in self._ids if self._m[mid].should_stop])
        return rows

    def _small_weights(self) -> list[int]:
        """Per member: weight-matrix entries with ``|w| < SPARSITY_TOL`` (its
        padding, all zeros, not counted)."""
        with torch.no_grad():
            counts = sum(
                (w.abs() < metrics.SPARSITY_TOL).sum(dim=_not_k(w))
                for w, _ in self._layers(self._flat)
            )
        assert isinstance(counts, Tensor)
        return [int(c) - pad for c, pad in zip(counts.tolist(), self._padding, strict=True)]

    @staticmethod
    def _state_of(m: _Member, flat: Tensor) -> dict[str, Tensor]:
        """A solo ``model.state_dict()`` (cloned) from a member's own flat row."""
        lay = m.layout
        return {
            name: flat[s].view(shape).clone()
            for name, s, shape in zip(lay.names, lay.slices, lay.shapes, strict=True)
        }

    @staticmethod
    def _robust_due(m: _Member) -> bool:
        return robust_due(m.epoch, m.cfg.training.robust_every, last=m.should_stop)

    def _robust_accuracies(self, rows: list[int], split: str) -> dict[int, float]:
        """``Trainer.robust_accuracy`` of the batch members at ``rows``, batched.

        Members sharing ``robust_steps`` and ``robust_samples`` run one PGD
        together; each draws its random starts from its own evaluation
        generator (seed, epoch, split, as solo) and has its own
        ``robust_eps``, so each is its solo attack.
        """
        groups: dict[tuple[int, int], list[int]] = {}
        for k in rows:
            t = self._m[self._ids[k]].cfg.training
            groups.setdefault((t.robust_steps, t.robust_samples), []).append(k)
        out: dict[int, float] = {}
        for (steps, samples), ks in groups.items():
            out.update(zip(ks, self._pgd_accuracy(ks, steps, samples, split), strict=True))
        return out

    def _pgd_accuracy(self, ks: list[int], steps: int, samples: int, split: str) -> list[float]:
        """``attacks.robust_accuracy`` (eval mode, one restart) for rows ``ks``."""
        members = [self._m[self._ids[k]] for k in ks]
        x_all, y_all, _ = self._tensors[split]
        x_all, y_all = x_all[:samples], y_all[:samples]
        n = x_all.shape[0]
        layers = self._layers(self._flat[torch.tensor(ks, device=self.device)])
        eps_values = [m.cfg.training.robust_eps for m in members]
        eps = _col(eps_values, self.device)
        alpha = _col([attacks.PGD_STEP_FACTOR * e / steps for e in eps_values], self.device)
        mask = feature_mask(x_all, self._mask)
        bounds = self.dataset.bounds
        # Each member's solo evaluation stream, never its training generator.
        generators = [evaluation_generator(m.cfg.training.seed, m.epoch, split) for m in members]

        def project(delta: Tensor, x: Tensor) -> Tensor:
            if bounds is not None:
                delta = (x + delta).clamp(bounds[0], bounds[1]) - x
            delta = torch.clamp(delta, min=-eps, max=eps)
            return delta if mask is None else delta * mask

        correct = torch.zeros(len(ks), device=self.device)
        for start in range(0, n, EVAL_BATCH):
            xb, yb = x_all[start : start + EVAL_BATCH], y_all[start : start + EVAL_BATCH]
            x = xb.expand(len(ks), -1, -1)
            labels = yb.expand(len(ks), -1).unsqueeze(2)
            u = torch.stack([random_uniform_like(xb, g) for g in generators])
            delta = project((2.0 * u - 1.0) * eps, x)
            for _ in range(steps):
                d = delta.detach().requires_grad_(True)
                with torch.enable_grad():
                    logp = F.log_softmax(self._forward(layers, x + d, None), dim=2)
                    (grad,) = torch.autograd.grad(-logp.gather(2, labels).sum(), d)
                delta = project(delta + alpha * grad.sign(), x)
            x_adv = x + delta
            if bounds is not None:
                x_adv = x_adv.clamp(bounds[0], bounds[1])
            if mask is not None:
                x_adv = torch.where(mask > 0, x_adv, x)
            with torch.no_grad():
                pred = self._forward(layers, x_adv, None).argmax(dim=2)
            correct += (pred == yb).sum(dim=1)
        return [c / n for c in correct.tolist()]

    # -- the Cohort protocol -----------------------------------------------------------

    def should_stop(self, member_id: str) -> bool:
        """The member's early stopping fired or its epochs are done."""
        m = self._member(member_id)
        return m.finished.should_stop if m.finished is not None else m.should_stop

    def drop(self, member_id: str) -> None:
        """Take the member out of the batch; its state stays readable."""
        m = self._member(member_id)
        m.dropped = True
        if member_id in self.members:
            self.members.remove(member_id)
        if member_id in self._ids:
            self._leave_batch([member_id])

    def state_dict(self, member_id: str) -> dict[str, Any]:
        """The member's ``Trainer.state_dict()`` (same keys, same layout)."""
        m = self._member(member_id)
        if m.finished is not None:
            with preserved_rng(self.device):
                torch.set_rng_state(m.private.get_state())
                return m.finished.state_dict()
        row = self._row(member_id)
        model = self._load_shell(m, row["params"])
        opt_state = row["opt"]
        step = opt_state.steps[0]
        m.export.advance_to(step)
        optimizer = m.export.optimizer
        optimizer.state.clear()
        if step > 0:
            flat_state = opt_state.row(0)
            lay = m.layout
            for p, s, shape in zip(model.parameters(), lay.slices, lay.shapes, strict=True):
                if self._sgd:
                    if m.cfg.training.momentum != 0:
                        optimizer.state[p] = {
                            "momentum_buffer": flat_state["momentum_buffer"][s].view(shape)
                        }
                else:
                    optimizer.state[p] = {
                        "step": torch.tensor(float(step)),
                        "exp_avg": flat_state["exp_avg"][s].view(shape),
                        "exp_avg_sq": flat_state["exp_avg_sq"][s].view(shape),
                    }
        fair = m.cfg.penalties.fairness
        n_constraints = len(self.dataset.group_names) * (2 if fair.kind == "eo" else 1)
        state: dict[str, Any] = {
            "epoch": m.epoch,
            "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": m.export.scheduler.state_dict() if m.export.scheduler else None,
            "generator": m.generator.get_state(),
            "torch_rng": m.private.get_state(),
            "early": vars(m.early).copy(),
            "history": m.history,
            "robust": list(m.robust) if m.robust is not None else None,
            "best_state": m.best_state,
            "multipliers": torch.zeros(n_constraints, device=self.device),
            "thresholds": m.thresholds,
            "lottery": m.lottery,
            "temperatures": m.temperatures,
            "fingerprint": self.dataset.fingerprint,
            "config": m.cfg.model_dump(mode="json"),
        }
        optimizer.state.clear()
        if m.cuda_state is not None:
            state["cuda_rng"] = m.cuda_state
        return state

    def _solo(self, member_id: str, state: Mapping[str, Any], source: str) -> Trainer:
        """A solo ``Trainer`` of the member continued from ``state``."""
        m = self._member(member_id)
        with preserved_rng(self.device):
            trainer = Trainer(m.cfg, dataset=self.dataset, device=self.device, stored=self._stored)
            trainer.load_state_dict(state, source=source)
        return trainer

    def load_state_dict(
        self, member_id: str, state: Mapping[str, Any], *, source: str = "<memory>"
    ) -> None:
        """Continue the member from ``Trainer.state_dict`` output (its checks and
        hyperparameter rules); it rejoins the batch unless dropped or done."""
        m = self._member(member_id)
        trainer = self._solo(member_id, state, source)
        params = list(trainer.model.parameters())
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        opt_states = [trainer.optimizer.state.get(p, {}) for p in params]
        # Every epoch takes the same number of optimizer steps.
        step = trainer.epoch * self._steps_per_epoch
        zeros = torch.zeros_like(flat)[None]
        opt: FusedAdamW | FusedSGD
        if self._sgd:
            bufs = [s.get("momentum_buffer") for s in opt_states]
            have = all(isinstance(b, Tensor) for b in bufs)
            buf = torch.cat([b.reshape(-1) for b in bufs])[None].clone() if have else zeros
            opt = FusedSGD(buf, [step])
        elif step:
            opt = FusedAdamW(
                torch.cat([s["exp_avg"].reshape(-1) for s in opt_states])[None].clone(),
                torch.cat([s["exp_avg_sq"].reshape(-1) for s in opt_states])[None].clone(),
                [step],
            )
        else:
            opt = FusedAdamW(zeros.clone(), zeros.clone(), [0])
        sched_state = trainer.scheduler.state_dict() if trainer.scheduler is not None else None
        opt_dump = trainer.optimizer.state_dict()
        m.schedule = MemberSchedule(
            m.shell, m.cfg, self._steps_per_epoch, start=step,
            optimizer_state=opt_dump, scheduler_state=sched_state,
        )  # fmt: skip
        m.export = MemberSchedule(
            m.shell, m.cfg, self._steps_per_epoch, start=step,
            optimizer_state=opt_dump, scheduler_state=sched_state,
        )  # fmt: skip
        m.generator = trainer.generator
        m.private.set_state(state["torch_rng"])
        if m.cuda_state is not None and "cuda_rng" in state:
            m.cuda_state = state["cuda_rng"]
        m.early, m.epoch, m.history = trainer.early, trainer.epoch, trainer.history
        m.robust, m.best_state = trainer._robust, trainer._best_state
        m.thresholds, m.temperatures = trainer.thresholds, trainer.temperatures
        m.lottery = trainer.lottery
        m.finished = None
        rows = {mid: self._row(mid) for mid in self._ids if mid != member_id}
        rows[member_id] = {"params": flat, "opt": opt}
        ids = [mid for mid in self._ids if mid != member_id]
        if not m.dropped and not m.should_stop:
            ids = [mid for mid in self.members if mid in ids or mid == member_id]
        else:
            m.frozen = rows[member_id]
        self._stack(ids, rows)

    def finish(self, member_id: str) -> dict[str, float]:
        """``Trainer.finish`` of the member, by a solo ``Trainer`` restored from
        :meth:`state_dict`; the member then trains no more."""
        m = self._member(member_id)
        if m.finished is None:
            m.finished = self._solo(member_id, self.state_dict(member_id), "<cohort>")
            if member_id in self._ids:
                self._leave_batch([member_id])
        with preserved_rng(self.device):
            return m.finished.finish()
