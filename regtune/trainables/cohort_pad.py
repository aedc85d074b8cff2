"""Width padding: MLP members of one depth but different widths in one batch.

Pure maths, no training. A member's parameters are a flat row in its solo
model's ``parameters()`` order (its :class:`Layout`). A batch of mixed widths
runs at the widest member's layout; a narrower member's row is *embedded*
there: each of its tensors fills the leading corner of the wide tensor
(hidden units ``0 .. width-1``), and every other entry, the padding, is
zero. A padded hidden unit has zero weights in and out and a zero bias, so
its activation is ``relu(0) = 0`` and the gradients of its weights are
exactly zero (see :mod:`regtune.trainables.cohort_fused` for why no penalty
or optimizer term moves them either). Extracting the member's row again is
the inverse gather, so a member's state never shows the padding.

Whether padding pays is :func:`width_groups`: a fused group costs a fixed
amount per epoch (Python, kernel launches, the optimizer's bookkeeping) plus
work proportional to its members times the multiply-adds of its WIDEST
member. Padding a narrower width into a wider group saves one group's fixed
cost and pays the extra multiply-adds; the partition of the sorted widths
into contiguous runs that costs least is found exactly (a small dynamic
programme). The constant is measured, see :data:`GROUP_OVERHEAD_MACS`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_IO_FEATURES",
    "GROUP_OVERHEAD_MACS",
    "Layout",
    "group_cost",
    "mlp_macs",
    "width_groups",
]

#: The fixed cost of one more fused group per epoch, in per-example
#: multiply-adds of one member (the unit :func:`mlp_macs` counts). Measured
#: with ``python -m benchmarks.cohort_speed --fit-only`` (one CPU thread,
#: digits, batch 128, widths 32-256, K 2-16, three runs under other load):
#: a fused epoch's CPU time fits ``a + K * (c + b * macs)`` with a = 13-18 ms,
#: b = 0.52-0.57 us, c = 3.9 ms, so ``a / b`` = 24k-35k. On digits this pads
#: widths 8-32 into one group (measured: 0.64x the CPU time of one group per
#: width), 16+32 and 48+64 (0.91x), and of 32/64/128/256 only 32+64 (1.01x;
#: padding all four to 256 took 1.9x). Measured on a CPU only: on a GPU a
#: group's fixed cost weighs more, so this pads less than would pay there.
GROUP_OVERHEAD_MACS: float = 30_000.0
#: ``n_features + n_classes`` assumed when the dataset is not at hand
#: (digits: 64 + 10).
DEFAULT_IO_FEATURES = 74


@dataclass(frozen=True)
class Layout:
    """Where each parameter tensor of a model lies in its flat row."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, model: nn.Module) -> Layout:
        """The layout of ``model.named_parameters()`` (the solo order)."""
        named = list(model.named_parameters())
        return cls(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named))

    @cached_property
    def slices(self) -> tuple[slice, ...]:
        """Each tensor's slice of the flat row."""
        offsets = list(itertools.accumulate((math.prod(s) for s in self.shapes), initial=0))
        return tuple(slice(a, b) for a, b in itertools.pairwise(offsets))

    @property
    def size(self) -> int:
        """Length of the flat row (the parameter count)."""
        return sum(math.prod(s) for s in self.shapes)

    @property
    def n_weights(self) -> int:
        """Entries of the weight matrices (tensors of 2 or more dimensions)."""
        return sum(math.prod(s) for s in self.shapes if len(s) >= 2)

    def views(self, flat: Tensor) -> list[Tensor]:
        """Each tensor as a ``(K, *shape)`` view of the ``(K, size)`` rows."""
        k = flat.shape[0]
        pairs = zip(self.slices, self.shapes, strict=True)
        return [flat[:, s].view(k, *shape) for s, shape in pairs]

    def embed_index(self, wide: Layout) -> Tensor | None:
        """Positions of this layout's entries inside ``wide``'s row (None: same layout).

        Each tensor goes to the leading corner of its wide counterpart, in
        the same (row-major) order, so ``wide_row[index] = row`` embeds and
        ``wide_row[index]`` extracts.

        Raises:
            ValueError: the layouts do not nest (other tensors, or a
                dimension larger than the wide one's).
        """
        if self == wide:
            return None
        if len(self.shapes) != len(wide.shapes) or any(
            len(a) != len(b) or any(x > y for x, y in zip(a, b, strict=True))
            for a, b in zip(self.shapes, wide.shapes, strict=True)
        ):
            raise ValueError(f"layout {self.shapes} does not fit inside {wide.shapes}")
        parts = []
        for shape, wide_shape, at in zip(self.shapes, wide.shapes, wide.slices, strict=True):
            grid = torch.arange(at.start, at.stop).view(wide_shape)
            parts.append(grid[tuple(slice(0, d) for d in shape)].reshape(-1))
        return torch.cat(parts)


def mlp_macs(width: int, depth: int, io_features: int = DEFAULT_IO_FEATURES) -> int:
    """Multiply-adds of one example through an MLP, forward (the training
    step's work is a fixed multiple of it).

    ``io_features`` is ``n_features + n_classes`` (first and last layer).
    """
    return width * io_features + (depth - 1) * width * width


def group_cost(
    widths: Sequence[int],
    depth: int,
    io_features: int = DEFAULT_IO_FEATURES,
    overhead_macs: float = GROUP_OVERHEAD_MACS,
) -> float:
    """The modelled cost of training ``widths`` as ONE group (padded to the widest)."""
    if not widths:
        return 0.0
    return overhead_macs + len(widths) * mlp_macs(max(widths), depth, io_features)


def width_groups(
    widths: Mapping[str, int],
    depth: int,
    io_features: int = DEFAULT_IO_FEATURES,
    overhead_macs: float = GROUP_OVERHEAD_MACS,
) -> list[list[str]]:
    """Split members (``{member_id: width}``) into the groups that cost least.

    Members of one width always share a group; a group holds a contiguous
    run of the sorted widths (padding to a wider width is only ever worth it
    for the next narrower ones). The cheapest partition under
    :func:`group_cost` is exact. Groups come widest first, members in the
    order given.
    """
    by_width: dict[int, list[str]] = {}
    for mid, w in widths.items():
        by_width.setdefault(w, []).append(mid)
    sizes = sorted(by_width)
    counts = [len(by_width[w]) for w in sizes]
    # best[i]: cheapest cost of the i narrowest widths; cut[i]: where its last group starts.
    best = [0.0] + [math.inf] * len(sizes)
    cut = [0] * (len(sizes) + 1)
    for end in range(1, len(sizes) + 1):
        for start in range(end):
            n = sum(counts[start:end])
            cost = best[start] + overhead_macs + n * mlp_macs(sizes[end - 1], depth, io_features)
            if cost < best[end]:
                best[end], cut[end] = cost, start
    runs: list[list[int]] = []
    end = len(sizes)
    while end > 0:
        runs.append(sizes[cut[end] : end])
        end = cut[end]
    order = list(widths)
    return [sorted((m for w in run for m in by_width[w]), key=order.index) for run in runs]
