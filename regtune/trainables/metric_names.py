"""Names of the structured metrics a trial reports at its end, and how to read them back.

Two families of flat float metrics carry structure in their names:

* **Reliability bins** (the calibration curve of the kept model):
  ``<split>_reliability.b<NN>.<stat>`` with ``NN`` the confidence slot
  (``00`` .. ``ECE_BINS - 1`` for the equal-width bins ``[NN/ECE_BINS,
  (NN+1)/ECE_BINS)``, and ``ECE_BINS`` for a confidence of exactly 1.0, the
  slot the ECE gives its own bin) and ``stat`` one of ``conf`` (mean top-label
  confidence), ``acc`` (share of arg-max predictions that are right) and
  ``count`` (examples in the slot). ``conf``/``acc`` are NaN in an empty slot.
  Example: ``test_reliability.b03.acc``.
* **Group keys**: a group's name as it appears in a metric name
  (:func:`group_keys`): runs of characters other than letters and digits
  (of any script: ``女性`` stays ``女性``) become ``_``; when two groups of
  one dataset would get one key (``<=40`` and ``>40`` both ``40``), each of
  them gets ``_`` and a 6-hex-digit hash of its exact name appended
  (``40_1f0e3a``), the same in every run, so no group's numbers overwrite
  another's.
* **Per-group rates**: the trainable writes ``<split>_<stat>_<group>`` with an
  interval ``..._ci_low``/``..._ci_high`` (``test_selection_rate_Female``,
  ``test_tpr_Female_ci_low``, ``test_acc_Male``); other writers use
  ``<split>_<stat>.<group>`` (the registry: ``test_positive_rate.Female``),
  ``<stat>.<group>`` or ``group.<group>.<stat>``. :func:`parse_group_metric`
  reads them all: the split prefix is optional, ``selection_rate``,
  ``pos_rate`` and ``positive_rate`` are one stat (``positive_rate``), as are
  ``acc`` and ``accuracy`` (``acc``).

Stdlib only (no torch), so the analysis reads these names on a laptop without
importing the training stack. :mod:`regtune.trainables.metrics` writes them.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "CI_HIGH",
    "CI_LOW",
    "GROUP_STATS",
    "RELIABILITY_STATS",
    "SPLITS",
    "GroupMetric",
    "ReliabilityMetric",
    "group_keys",
    "group_metric_name",
    "interval_names",
    "parse_group_metric",
    "parse_reliability_name",
    "reliability_name",
    "safe_group_name",
]

#: Data splits a metric name may start with (``<split>_``).
SPLITS = ("train", "val", "test")
#: Statistics of one reliability slot, in the order they are written.
RELIABILITY_STATS = ("conf", "acc", "count")
#: Canonical per-group statistics and the spellings each one is written as.
GROUP_STATS: dict[str, tuple[str, ...]] = {
    "acc": ("acc", "accuracy"),
    "positive_rate": ("positive_rate", "pos_rate", "selection_rate"),
    "tpr": ("tpr",),
    "fpr": ("fpr",),
}
#: Suffixes naming the ends of a metric's confidence interval.
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"

_SPLIT = "|".join(SPLITS)
_RELIABILITY = re.compile(
    rf"^(?:(?P<split>{_SPLIT})_)?reliability\.b(?P<slot>\d{{2,}})\.(?P<stat>conf|acc|count)$"
)
_ALIASES = {alias: stat for stat, aliases in GROUP_STATS.items() for alias in aliases}
# Longest spelling first, so "accuracy" is not read as "acc" + "uracy".
_STAT = "|".join(sorted(_ALIASES, key=len, reverse=True))
_GROUP = re.compile(
    rf"^(?:(?P<split>{_SPLIT})_)?"
    rf"(?:group[._](?P<group_a>.+)[._](?P<stat_a>{_STAT})"
    rf"|(?P<stat_b>{_STAT})[._](?P<group_b>.+))$"
)


class ReliabilityMetric(NamedTuple):
    """A parsed reliability-bin name: split (``""`` when none), slot, stat."""

    split: str
    slot: int
    stat: str


class GroupMetric(NamedTuple):
    """A parsed per-group metric name.

    ``split``: ``"train"``/``"val"``/``"test"`` or ``""``; ``stat``: a key of
    :data:`GROUP_STATS`; ``group``: as written; ``bound``: ``""`` for the value,
    ``"low"``/``"high"`` for an interval end.
    """

    split: str
    stat: str
    group: str
    bound: str


def reliability_name(split: str, slot: int, stat: str) -> str:
    """``<split>_reliability.b<NN>.<stat>`` (``NN`` zero-padded to two digits)."""
    if stat not in RELIABILITY_STATS:
        raise ValueError(f"stat must be one of {', '.join(RELIABILITY_STATS)}; got {stat!r}")
    return f"{split}_reliability.b{slot:02d}.{stat}"


def parse_reliability_name(name: str) -> ReliabilityMetric | None:
    """The parts of a reliability-bin name, or ``None`` for any other name."""
    match = _RELIABILITY.match(name)
    if match is None:
        return None
    return ReliabilityMetric(match["split"] or "", int(match["slot"]), match["stat"])


#: Runs of characters a group key replaces by ``_``: anything but a letter or digit
#: of any script (``_`` included, so runs collapse as before).
_UNSAFE = re.compile(r"[\W_]+")
#: Hex digits of the hash that tells colliding group keys apart.
HASH_DIGITS = 6


def safe_group_name(name: object) -> str:
    """A readable, metric-name-safe form of ONE group name (``African-American`` ->
    ``African_American``, ``女性`` -> ``女性``, ``--`` -> ``group``).

    Two names may share a form (``<=40`` and ``>40``): name a dataset's groups with
    :func:`group_keys`, which tells them apart. Used alone it matches a stored
    spelling of one group to another (the registry's ``test_positive_rate.Native-American``
    to the trainer's ``test_selection_rate_Native_American``).
    """
    return _UNSAFE.sub("_", str(name)).strip("_") or "group"


def _hash(name: str, digits: int) -> str:
    return hashlib.blake2b(name.encode("utf-8"), digest_size=(digits + 1) // 2).hexdigest()[:digits]


def group_keys(names: Sequence[object]) -> list[str]:
    """The metric keys of a dataset's groups, in order: one distinct key per group.

    Each key is :func:`safe_group_name` of the name; the names that share one get
    ``_<hash>`` appended (:data:`HASH_DIGITS` hex digits of a hash of the exact name,
    so a key does not depend on the order of the groups, nor on a run). Every writer
    of a per-group metric (rates, intervals, accuracy, thresholds, temperatures)
    names groups with this function, given all the dataset's group names.

    Raises:
        ValueError: two groups have the same name (as text).
    """
    texts = [str(n) for n in names]
    repeated = sorted(t for t, k in Counter(texts).items() if k > 1)
    if repeated:
        raise ValueError(f"group names must be distinct; repeated: {repeated}")
    bases = [safe_group_name(t) for t in texts]
    shared = Counter(bases)
    digits = HASH_DIGITS
    while True:
        keys = [
            b if shared[b] == 1 else f"{b}_{_hash(t, digits)}"
            for t, b in zip(texts, bases, strict=True)
        ]
        if len(set(keys)) == len(keys):
            return keys
        digits *= 2  # a hashed key met another key: longer hashes (never seen in practice)


def group_metric_name(split: str, stat: str, group: str, bound: str = "") -> str:
    """The trainable's spelling: ``<split>_<stat>_<group>[_ci_low|_ci_high]``.

    ``group`` must already be a group key (:func:`group_keys`).
    """
    suffix = {"": "", "low": CI_LOW, "high": CI_HIGH}[bound]
    return f"{split}_{stat}_{group}{suffix}"


def interval_names(name: str) -> tuple[str, str]:
    """The names of the interval ends of metric ``name`` (``name_ci_low``, ``name_ci_high``)."""
    return f"{name}{CI_LOW}", f"{name}{CI_HIGH}"


def parse_group_metric(name: str) -> GroupMetric | None:
    """The parts of a per-group metric name in any accepted form, or ``None``.

    Interval ends (``..._ci_low``/``..._ci_high``) parse to the same split,
    stat and group as their value, with ``bound`` set.
    """
    bound = ""
    stem = name
    for end, suffix in (("low", CI_LOW), ("high", CI_HIGH)):
        if name.endswith(suffix):
            bound, stem = end, name[: -len(suffix)]
            break
    match = _GROUP.match(stem)
    if match is None:
        return None
    stat = match["stat_a"] or match["stat_b"]
    group = match["group_a"] or match["group_b"]
    return GroupMetric(match["split"] or "", _ALIASES[stat], group, bound)
