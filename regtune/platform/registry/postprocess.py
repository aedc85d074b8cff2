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

Rows whose group is unknown (the sensitive attribute is missing from the
record or holds a value the training data never had; or no group codes were
given): per-group temperatures give way to ``fallback_temperature`` (one
temperature fitted on all validation rows), and the decision is the arg-max
of the (scaled) probabilities. With a single temperature every row uses it.

Group code ``g`` indexes ``groups`` (the schema's ``sensitive_values``). A
stored value that is malformed (wrong type, count or range) is refused with a
:class:`~regtune.errors.CheckpointError` naming the field and what is allowed.
This module needs numpy and torch only (serving imports it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from regtune.errors import CheckpointError
from regtune.platform.registry.meta_checks import field_error
from regtune.trainables.config import ROBUST_RESAMPLES
from regtune.trainables.thresholds import FIT_ROWS

__all__ = [
    "CALIBRATIONS",
    "CONSTRAINT_KINDS",
    "META_KEY",
    "THRESHOLD_MAX",
    "PostProcessing",
    "group_codes",
]

#: Key of meta.json holding the post-processing (``null``: none).
META_KEY = "postprocessing"
#: ``settings.calibration`` values (``training.calibration``).
CALIBRATIONS: tuple[str, ...] = ("none", "temperature", "group_temperature")
#: ``settings.constraint.kind`` values (``penalties.fairness.kind``).
CONSTRAINT_KINDS: tuple[str, ...] = ("dp", "eo")
#: Largest threshold allowed: the next float above 1 ("never positive"; what
#: :func:`regtune.trainables.thresholds.fit_thresholds` picks to select none).
THRESHOLD_MAX = float(np.nextafter(1.0, 2.0))


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


def _check_robust(
    constraint: Mapping[str, Any], bad: Callable[[str, Any, str], CheckpointError]
) -> None:
    """A stored constraint's robust-threshold keys, when present, are what a
    config allows (``bad(field, value, allowed)`` makes the error)."""
    low, high = ROBUST_RESAMPLES
    checks = {
        "robust_quantile": (
            lambda v: _finite_number(v) and 0.0 < v < 1.0,
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


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


@dataclass(frozen=True)
class PostProcessing:
    """Temperatures and thresholds of a version (see the module docstring).

    Attributes:
        groups: names of the group codes (the schema's ``sensitive_values``).
        temperatures: one temperature, or one per group code; None: none.
        fallback_temperature: the temperature of rows with an unknown group
            when ``temperatures`` is per group; None otherwise.
        thresholds: one threshold per group code on the positive-class
            probability; None: arg-max decisions.
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
        return self.temperatures is not None or self.thresholds is not None

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
        """Class ids (int64): ``probs[:, 1] >= thresholds[g]`` for rows of a
        known group when there are thresholds, else the arg-max."""
        argmax = probs.argmax(axis=1)
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

        def bad(name: str, value: Any, allowed: str) -> CheckpointError:
            return field_error(where, f"{META_KEY}.{name}", value, allowed)

        if not isinstance(raw, Mapping):
            raise field_error(
                where,
                META_KEY,
                raw,
                "null or an object with groups, temperatures, fallback_temperature, "
                "thresholds, settings, record",
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
            if not all(_finite_number(t) and t > 0 for t in temps):
                raise bad("temperatures", temps, temps_allowed)
        fallback = raw.get("fallback_temperature")
        if isinstance(temps, list) and len(temps) > 1:
            positive = isinstance(fallback, (int, float)) and fallback > 0
            if not (_finite_number(fallback) and positive):
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
            if not all(_finite_number(t) and 0.0 <= t <= THRESHOLD_MAX for t in thresholds):
                raise bad("thresholds", thresholds, allowed)

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
                and _finite_number(constraint.get("tolerance"))
                and constraint["tolerance"] >= 0
                and constraint.get("rows", "val") in FIT_ROWS
            )
            if not ok:
                raise bad(
                    "settings.constraint",
                    constraint,
                    "null or {kind: dp|eo, tolerance: a finite number >= 0, "
                    f"rows (optional): {'|'.join(FIT_ROWS)}}}",
                )
            _check_robust(constraint, bad)
        record = raw.get("record", {})
        if not isinstance(record, Mapping):
            raise bad("record", record, "an object")
        return cls(
            groups=tuple(expected),
            temperatures=None if temps is None else tuple(float(t) for t in temps),
            fallback_temperature=None if fallback is None else float(fallback),
            thresholds=None if thresholds is None else tuple(float(t) for t in thresholds),
            settings=dict(settings),
            record=dict(record),
        )
