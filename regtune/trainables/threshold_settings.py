"""Which threshold fit a fairness config asks for: the one mapping from
``penalties.fairness`` (and ``training.seed``) to the arguments of
:func:`regtune.trainables.thresholds.fit_thresholds`.

Two callers fit post-processing thresholds: the trainer at the end of a run
(from its config) and the registry when it refits a version (ensembles,
students, int8 copies) or recounts a single trial's robust criterion (from
the ``settings.constraint`` a version stores, written by
:meth:`ThresholdSettings.as_constraint`). Both go through
:class:`ThresholdSettings`, so they cannot fit differently::

    settings = ThresholdSettings.from_config(config)        # None: no thresholds
    stored = settings.as_constraint()                       # what meta.json keeps
    assert ThresholdSettings.from_constraint(stored) == settings
    fit = settings.fit(scores, y, s, n_groups)              # a ThresholdFit
    lottery = settings.fit_lottery(scores, y, s, n_groups)  # randomized: a LotteryFit
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from regtune.trainables import threshold_lottery, thresholds
from regtune.trainables.config import TrainConfig, parse_train_config

__all__ = ["ThresholdSettings"]


@dataclass(frozen=True)
class ThresholdSettings:
    """One threshold fit's settings.

    ``kind``: ``dp`` or ``eo``. ``tolerance``: ``bound - margin``, or
    :data:`~regtune.trainables.thresholds.DEFAULT_TOLERANCE` (exact parity)
    without a bound. ``rows``: the rows the thresholds are fitted on (one of
    :data:`~regtune.trainables.thresholds.FIT_ROWS`; the caller gathers
    them). ``robust_quantile``, ``resamples``, ``seed``: the robust fit's
    (``robust_quantile`` None: the plain fit; ``resamples`` and ``seed`` are
    then unused and set to their defaults, so equal fits compare equal).
    ``randomized``: a lottery per group
    (:func:`~regtune.trainables.threshold_lottery.fit_lottery`: :meth:`fit_lottery`)
    instead of one threshold (:meth:`fit`); never robust.
    """

    kind: str
    tolerance: float
    rows: str = "val"
    robust_quantile: float | None = None
    resamples: int = thresholds.DEFAULT_RESAMPLES
    seed: int = 0
    randomized: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("dp", "eo"):
            raise ValueError(thresholds.BAD_KIND.format(kind=self.kind))
        if self.rows not in thresholds.FIT_ROWS:
            raise ValueError(
                thresholds.BAD_FIT_ROWS.format(rows=self.rows, allowed=thresholds.FIT_ROWS)
            )
        if self.robust_quantile is None:
            object.__setattr__(self, "resamples", thresholds.DEFAULT_RESAMPLES)
            object.__setattr__(self, "seed", 0)

    @classmethod
    def from_config(
        cls, config: TrainConfig | Mapping[str, Any], *, rows: str | None = None
    ) -> ThresholdSettings | None:
        """The fit a training config asks for (None: its fairness method fits
        no thresholds). ``rows`` overrides ``penalties.fairness.threshold_rows``
        (``Trainer(threshold_rows=...)``); the robust fit is seeded by
        ``training.seed``."""
        cfg = parse_train_config(config, stored=True)
        fair = cfg.penalties.fairness
        if fair.kind == "none" or not fair.postprocess:
            return None
        tolerance = (
            fair.bound - fair.margin if fair.bound is not None else thresholds.DEFAULT_TOLERANCE
        )
        quantile = fair.robust_quantile
        return cls(
            kind=fair.kind,
            tolerance=float(tolerance),
            rows=rows or fair.threshold_rows,
            robust_quantile=None if quantile is None else float(quantile),
            resamples=int(fair.robust_resamples),
            seed=int(cfg.training.seed),
            randomized=bool(fair.randomized),
        )

    @classmethod
    def from_constraint(cls, constraint: Mapping[str, Any]) -> ThresholdSettings:
        """The settings a stored ``settings.constraint`` (:meth:`as_constraint`
        output, checked when its version was loaded) describes; ``rows``
        defaults to ``val`` for versions stored before it existed."""
        quantile = constraint.get("robust_quantile")
        return cls(
            kind=str(constraint["kind"]),
            tolerance=float(constraint["tolerance"]),
            rows=str(constraint.get("rows", "val")),
            robust_quantile=None if quantile is None else float(quantile),
            resamples=int(constraint.get("robust_resamples", thresholds.DEFAULT_RESAMPLES)),
            seed=int(constraint.get("seed", 0)),
            randomized=bool(constraint.get("randomized", False)),
        )

    def as_constraint(self) -> dict[str, Any]:
        """``{"kind", "tolerance", "rows"}``, with ``robust_quantile``,
        ``robust_resamples`` and ``seed`` for a robust fit, ``randomized: true``
        for a lottery: what a version stores as ``settings.constraint``."""
        out: dict[str, Any] = {"kind": self.kind, "tolerance": self.tolerance, "rows": self.rows}
        if self.randomized:
            out["randomized"] = True
        if self.robust_quantile is not None:
            out.update(
                robust_quantile=self.robust_quantile,
                robust_resamples=self.resamples,
                seed=self.seed,
            )
        return out

    def fit(self, scores: Tensor, y: Tensor, s: Tensor, n_groups: int) -> thresholds.ThresholdFit:
        """:func:`~regtune.trainables.thresholds.fit_thresholds` with these
        settings on the given rows (the caller gathers ``rows``).

        Raises:
            DataError, ValueError: as ``fit_thresholds``.
        """
        return thresholds.fit_thresholds(
            scores,
            y,
            s,
            n_groups,
            kind=self.kind,
            tolerance=self.tolerance,
            robust_quantile=self.robust_quantile,
            resamples=self.resamples,
            seed=self.seed,
        )

    def fit_lottery(
        self, scores: Tensor, y: Tensor, s: Tensor, n_groups: int
    ) -> threshold_lottery.LotteryFit:
        """:func:`~regtune.trainables.threshold_lottery.fit_lottery` with these
        settings on the given rows (the caller gathers ``rows``).

        Raises:
            DataError, ValueError: as ``fit_lottery``.
        """
        return threshold_lottery.fit_lottery(
            scores, y, s, n_groups, kind=self.kind, tolerance=self.tolerance
        )

    def robust_gap(
        self, scores: Tensor, y: Tensor, s: Tensor, n_groups: int, cuts: tuple[float, ...]
    ) -> float | None:
        """The robust criterion of given thresholds on the given rows (what a
        robust :meth:`fit` reports as ``robust_gap`` for its own tuple); None
        for a plain fit.

        Raises:
            DataError, ValueError: as
                :func:`~regtune.trainables.thresholds.resampled_gap`.
        """
        if self.robust_quantile is None:
            return None
        return thresholds.resampled_gap(
            scores,
            y,
            s,
            n_groups,
            cuts,
            kind=self.kind,
            quantile=self.robust_quantile,
            resamples=self.resamples,
            seed=self.seed,
        )
