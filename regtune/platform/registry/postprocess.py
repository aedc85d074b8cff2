"""A version's post-processing: temperatures and per-group decision thresholds.

A trained network's arg-max is not always what a version should answer. Two
steps fitted on the validation split after training (by the trainer, or by
promotion for an ensemble, see :mod:`.postfit`) travel with the version in
``meta.json["postprocessing"]`` and are applied by ``regtune.load`` and
``regtune serve`` alike:

1. **Temperatures** (``training.calibration``): the version module's output
   (a single network's logits; an ensemble's log of the mean member
   probabilities) is divided by ``temperatures[g]`` (one per sensitive group
   code ``g``) or by the single ``temperatures[0]`` before the softmax.
2. **Thresholds** (fairness method ``postprocess`` and its combinations; binary
   tasks): the decision is the positive class (class id 1) when the
   temperature-scaled positive-class probability is ``>= thresholds[g]``.
   With ``penalties.fairness.randomized`` a version holds a ``lottery``
   instead: per group several thresholds and their weights, one of them
   picked per row by a hash of the row's own probability, so the same input
   always gets the same decision (:mod:`regtune.trainables.lottery_draws`).

Rows whose group is unknown (the sensitive attribute is missing from the
record or holds a value the training data never had; or no group codes were
given): per-group temperatures give way to ``fallback_temperature`` (one
temperature fitted on all validation rows), and the decision is the arg-max
of the (scaled) probabilities. With a single temperature every row uses it.

Group code ``g`` indexes ``groups`` (the schema's ``sensitive_values``). A
stored value that is malformed (wrong type, count or range) is refused with a
:class:`~regtune.errors.CheckpointError` naming the field and what is allowed
(:func:`~regtune.platform.registry.meta_checks.check_postprocessing`, which
needs no torch: ``regtune serve --write-config`` runs it too).
This module needs numpy and torch only (serving imports it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from regtune.platform.registry.meta_checks import (
    CALIBRATIONS,
    CONSTRAINT_KINDS,
    META_KEY,
    THRESHOLD_MAX,
    check_postprocessing,
)
from regtune.trainables.lottery_draws import apply_lottery

__all__ = [
    "CALIBRATIONS",
    "CONSTRAINT_KINDS",
    "META_KEY",
    "THRESHOLD_MAX",
    "PostProcessing",
    "group_codes",
]


def group_codes(groups: Sequence[int | None] | np.ndarray | Tensor | None, n: int) -> np.ndarray:
    """Group codes as an int64 array of length ``n``, -1 where unknown.

    ``groups`` may be None (every row unknown), a sequence of codes with None
    for unknown rows (what :meth:`regtune.serve.predictor.ServedModel.groups`
    returns), or an integer array/tensor (negative = unknown).

    Raises:
        ValueError: ``groups`` does not have ``n`` entries.
    """
    if groups is None:
        return np.full(n, -1, dtype=np.int64)
    if isinstance(groups, Tensor):
        codes = groups.detach().to("cpu").numpy().astype(np.int64, copy=False)
    elif isinstance(groups, np.ndarray) and groups.dtype.kind in "iu":
        codes = groups.astype(np.int64, copy=False)
    else:
        try:
            codes = np.array(groups, dtype=np.int64)  # every group known: one C-level pass
        except TypeError:
            # None becomes NaN in a float array: still no Python per row.
            as_float = np.asarray(groups, dtype=np.float64)
            codes = np.where(np.isnan(as_float), -1, as_float).astype(np.int64)
    if codes.shape != (n,):
        raise ValueError(f"got {codes.shape[0] if codes.ndim else 0} group codes for {n} rows")
    return codes


@dataclass(frozen=True)
class PostProcessing:
    """Temperatures and thresholds of a version (see the module docstring).

    Attributes:
        groups: names of the group codes (the schema's ``sensitive_values``).
        temperatures: one temperature, or one per group code; None: none.
        fallback_temperature: the temperature of rows with an unknown group
            when ``temperatures`` is per group; None otherwise.
        thresholds: one threshold per group code on the positive-class
            probability; None: arg-max decisions (or the lottery).
        lottery: ``(thresholds, weights)``, one tuple of each per group code
            (a randomized fit); None: none. Never set with ``thresholds``.
        settings: what was asked for (``calibration``, ``constraint``
            ``{kind, tolerance}`` or None); a refit (students, quantized
            copies) uses these.
        record: provenance and validation numbers (``source``, ``fit``).
    """

    groups: tuple[str, ...]
    temperatures: tuple[float, ...] | None = None
    fallback_temperature: float | None = None
    thresholds: tuple[float, ...] | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    record: Mapping[str, Any] = field(default_factory=dict)
    lottery: tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]] | None = None

    def __post_init__(self) -> None:
        # Lookup tables built once (serving applies them per request): the
        # temperatures with the fallback appended at index len(temperatures),
        # and the thresholds.
        temps = self.temperatures or ()
        fallback = self.fallback_temperature if self.fallback_temperature is not None else 1.0
        table = torch.tensor([*temps, fallback], dtype=torch.float64)
        object.__setattr__(self, "_temperature_table", table)
        object.__setattr__(self, "_temperature_tables", {torch.float64: table})
        cuts = np.asarray(self.thresholds or (), dtype=np.float64)
        object.__setattr__(self, "_threshold_table", cuts)

    def _table(self, dtype: torch.dtype) -> Tensor:
        tables: dict[torch.dtype, Tensor] = self._temperature_tables  # type: ignore[attr-defined]
        if dtype not in tables:
            tables[dtype] = self._temperature_table.to(dtype)  # type: ignore[attr-defined]
        return tables[dtype]

    @property
    def active(self) -> bool:
        """Whether it changes anything (some temperature or threshold is set)."""
        return self.temperatures is not None or self.decides

    @property
    def decides(self) -> bool:
        """Whether decisions are per-group (thresholds or a lottery), not the arg-max."""
        return self.thresholds is not None or self.lottery is not None

    # -- applying ------------------------------------------------------------------

    def row_temperatures(self, codes: np.ndarray) -> np.ndarray | None:
        """The temperature of each row (float64), None when there are none."""
        if self.temperatures is None:
            return None
        if len(self.temperatures) == 1:
            return np.full(codes.shape[0], self.temperatures[0], dtype=np.float64)
        fallback = self.fallback_temperature if self.fallback_temperature is not None else 1.0
        table = np.array([*self.temperatures, fallback], dtype=np.float64)
        known = (codes >= 0) & (codes < len(self.temperatures))
        return table[np.where(known, codes, len(self.temperatures))]

    def scale_logits(self, logits: Tensor, codes: np.ndarray) -> Tensor:
        """``logits / T`` row by row (unchanged without temperatures).

        The division is in the logits' dtype, as the trainer's
        (:func:`regtune.trainables.calibration.scale_logits`), so the
        probabilities equal the trainer's bitwise.
        """
        if self.temperatures is None:
            return logits
        table = self._table(logits.dtype).to(logits.device)
        if len(self.temperatures) == 1:
            return logits / table[0]
        n_groups = len(self.temperatures)
        rows = np.where((codes >= 0) & (codes < n_groups), codes, n_groups)
        return logits / table[torch.from_numpy(rows).to(logits.device)][:, None]

    def decide(self, probs: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Class ids (int64): ``probs[:, 1] >= thresholds[g]`` (or the lottery's
        pick, see the module docstring) for rows of a known group when there
        are thresholds, else the arg-max."""
        argmax = probs.argmax(axis=1)
        if self.lottery is not None:
            cuts, weights = self.lottery
            known = (codes >= 0) & (codes < len(cuts))
            out = argmax.astype(np.int64, copy=True)
            if known.any():
                out[known] = apply_lottery(probs[known, 1], codes[known], cuts, weights)
            return out
        if self.thresholds is None:
            return argmax
        table: np.ndarray = self._threshold_table  # type: ignore[attr-defined]
        known = (codes >= 0) & (codes < table.shape[0])
        positive = probs[:, 1] >= table[np.where(known, codes, 0)]
        return np.where(known, positive.astype(np.int64), argmax)

    # -- meta.json ------------------------------------------------------------------

    def to_meta(self) -> dict[str, Any]:
        """The JSON form stored under ``meta.json["postprocessing"]``."""
        return {
            "groups": list(self.groups),
            "temperatures": None if self.temperatures is None else list(self.temperatures),
            "fallback_temperature": self.fallback_temperature,
            "thresholds": None if self.thresholds is None else list(self.thresholds),
            **(
                {}
                if self.lottery is None
                else {
                    "lottery": {
                        "thresholds": [list(t) for t in self.lottery[0]],
                        "weights": [list(w) for w in self.lottery[1]],
                    }
                }
            ),
            "settings": dict(self.settings),
            "record": dict(self.record),
        }

    @classmethod
    def from_meta(
        cls,
        raw: Any,
        *,
        sensitive_values: Sequence[str],
        n_classes: int,
        where: str,
    ) -> PostProcessing | None:
        """Parse and check ``meta.json["postprocessing"]`` (None: absent or null).

        Raises:
            CheckpointError: a malformed field, naming it and what is allowed.
        """
        if raw is None:
            return None

        check_postprocessing(
            raw, sensitive_values=sensitive_values, n_classes=n_classes, where=where
        )
        temps, thresholds = raw.get("temperatures"), raw.get("thresholds")
        fallback = raw.get("fallback_temperature")
        lottery = raw.get("lottery")
        return cls(
            groups=tuple(str(v) for v in sensitive_values),
            temperatures=None if temps is None else tuple(float(t) for t in temps),
            fallback_temperature=None if fallback is None else float(fallback),
            thresholds=None if thresholds is None else tuple(float(t) for t in thresholds),
            settings=dict(raw.get("settings", {})),
            record=dict(raw.get("record", {})),
            lottery=None
            if lottery is None
            else (
                tuple(tuple(float(t) for t in cuts) for cuts in lottery["thresholds"]),
                tuple(tuple(float(w) for w in ws) for ws in lottery["weights"]),
            ),
        )
