"""Which stored columns are per-group rates, interval ends and reliability bins.

The grammar of the names is :mod:`regtune.trainables.metric_names` (stdlib
only: the trainable writes its names with it, and importing it here does not
load torch). This module sorts a table's columns by that grammar:

- :func:`group_columns`: per-group values, ``{stat: {group: column}}``, for
  the bias diagnosis (every accepted spelling, split prefix optional);
- :func:`group_rate_columns`: the same with each value's interval ends, for
  the best trial's per-group panel;
- :func:`reliability_columns`: reliability-bin columns by split and slot;
- :func:`detail_columns`: columns only the best trial's view needs (bins and
  interval ends), which a large analysis reads for that one trial only;
- :func:`metric_choices`: the metric names a user would pick, detail columns
  collapsed into patterns (for error messages).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from regtune.trainables.metric_names import (
    CI_HIGH,
    CI_LOW,
    GROUP_STATS,
    RELIABILITY_STATS,
    group_keys,
    parse_group_metric,
    parse_reliability_name,
)

__all__ = [
    "SPLIT_PREFERENCE",
    "GroupRate",
    "detail_columns",
    "group_columns",
    "group_rate_columns",
    "is_final_report",
    "metric_choices",
    "reliability_columns",
]

#: Which split's per-group rates and bins the best trial's view shows, first found first.
SPLIT_PREFERENCE = ("test", "", "val", "train")


@dataclass(frozen=True)
class GroupRate:
    """One per-group value column and its interval-end columns (``None`` when not stored)."""

    split: str
    stat: str
    group: str
    value: str
    low: str | None
    high: str | None


def _key(split: str, stat: str) -> str:
    return stat if not split else f"{split}_{stat}"


def group_columns(columns: Iterable[str]) -> dict[str, dict[str, str]]:
    """Per-group value columns as ``{stat: {group: column}}`` for stats with two or
    more groups; the key is ``<split>_<stat>`` when the names carry a split
    (``test_positive_rate``), the canonical stat otherwise. Interval ends are left out.
    """
    found: dict[str, dict[str, str]] = {}
    for column in columns:
        parsed = parse_group_metric(str(column))
        if parsed is None or parsed.bound:
            continue
        found.setdefault(_key(parsed.split, parsed.stat), {})[parsed.group] = str(column)
    return {key: groups for key, groups in found.items() if len(groups) >= 2}


def group_rate_columns(columns: Iterable[str]) -> list[GroupRate]:
    """Every per-group value column with its interval ends, one split per stat (the
    first of :data:`SPLIT_PREFERENCE` that has the stat), stats in
    :data:`~regtune.trainables.metric_names.GROUP_STATS` order."""
    names = [str(c) for c in columns]
    present = set(names)
    by_stat: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for column in names:
        parsed = parse_group_metric(column)
        if parsed is None or parsed.bound:
            continue
        by_stat.setdefault(parsed.stat, {}).setdefault(parsed.split, []).append(
            (parsed.group, column)
        )
    out: list[GroupRate] = []
    for stat in GROUP_STATS:
        splits = by_stat.get(stat, {})
        split = next((s for s in SPLIT_PREFERENCE if s in splits), None)
        if split is None:
            continue
        # One entry per group: a group written in two spellings (the registry's
        # test_positive_rate.Native-American and test_selection_rate_Native_American)
        # keeps the one with an interval. The registry writes the group's own name,
        # the trainer its key among all the groups (group_keys: <=40 and >40 are
        # 40_6414c2 and 40_bce664), so names without an interval are keyed the same way.
        rates = [
            GroupRate(
                split,
                stat,
                group,
                column,
                f"{column}{CI_LOW}" if f"{column}{CI_LOW}" in present else None,
                f"{column}{CI_HIGH}" if f"{column}{CI_HIGH}" in present else None,
            )
            for group, column in splits[split]
        ]
        bare = sorted({r.group for r in rates if r.low is None})
        bare_keys = dict(zip(bare, group_keys(bare), strict=True))
        chosen: dict[str, GroupRate] = {}
        for rate in rates:
            key = rate.group if rate.low is not None else bare_keys[rate.group]
            if key not in chosen or (chosen[key].low is None and rate.low is not None):
                chosen[key] = rate
        out += chosen.values()
    return out


def reliability_columns(columns: Iterable[str]) -> dict[str, dict[int, dict[str, str]]]:
    """Reliability-bin columns as ``{split: {slot: {stat: column}}}``."""
    out: dict[str, dict[int, dict[str, str]]] = {}
    for column in columns:
        parsed = parse_reliability_name(str(column))
        if parsed is not None:
            out.setdefault(parsed.split, {}).setdefault(parsed.slot, {})[parsed.stat] = str(column)
    return out


def is_final_report(name: str) -> bool:
    """True for a metric reported once, at the trial's end (``test_*``, reliability bins):
    a trial's summary takes it from its last epoch."""
    return name.startswith("test_") or parse_reliability_name(name) is not None


def detail_columns(columns: Iterable[str]) -> list[str]:
    """The columns only the best trial's view reads: reliability bins and interval ends
    (``*_ci_low``/``*_ci_high``)."""
    return [
        str(c)
        for c in columns
        if parse_reliability_name(str(c)) is not None or str(c).endswith((CI_LOW, CI_HIGH))
    ]


#: Groups named after a collapsed per-group pattern, at most.
LISTED_GROUPS = 8


def _group_pattern(name: str) -> tuple[str, str] | None:
    """``name`` with its group replaced by ``<group>``, and the group; ``None`` when it is
    not a per-group name."""
    parsed = parse_group_metric(name)
    if parsed is None:
        return None
    suffix = {"low": CI_LOW, "high": CI_HIGH}.get(parsed.bound, "")
    stem = name[: len(name) - len(suffix)]
    group = parsed.group
    if stem.endswith(group):  # <stat>_<group>, <stat>.<group>
        at = len(stem) - len(group)
    else:  # group.<group>.<stat>
        at = stem.find(group, stem.find("group") + len("group"))
    return stem[:at] + "<group>" + stem[at + len(group) :] + suffix, group


def metric_choices(columns: Iterable[str]) -> list[str]:
    """The metric names to offer a user, sorted: every plain metric, and the detail
    columns collapsed into patterns: reliability bins as
    ``test_reliability.bNN.{conf,acc,count}``, per-group values as
    ``test_acc_<group> (<group>: F, M)``, interval ends folded into their value as
    ``test_dp_diff[_ci_{low,high}]``.
    """
    names: dict[str, set[str]] = {}  # display name (group collapsed) -> groups
    stats: dict[str, set[str]] = {}
    for column in map(str, columns):
        bin_name = parse_reliability_name(column)
        if bin_name is not None:
            prefix = f"{bin_name.split}_" if bin_name.split else ""
            stats.setdefault(f"{prefix}reliability.bNN", set()).add(bin_name.stat)
            continue
        grouped = _group_pattern(column)
        shown, group = grouped if grouped is not None else (column, None)
        names.setdefault(shown, set()).update([group] if group else [])
    out = [
        f"{stem}.{{{','.join(s for s in RELIABILITY_STATS if s in found)}}}"
        for stem, found in stats.items()
    ]
    for name, groups in names.items():
        base = name[: -len(CI_LOW)] if name.endswith(CI_LOW) else None
        if name.endswith(CI_HIGH) and name[: -len(CI_HIGH)] + CI_LOW in names:
            continue  # folded into its _ci_low entry
        if base is not None and name[: -len(CI_LOW)] + CI_HIGH in names:
            if base in names:
                continue  # folded into its value
            name = base + "_ci_{low,high}"
        elif base is None and name + CI_LOW in names and name + CI_HIGH in names:
            name += "[_ci_{low,high}]"
        if groups:
            listed = sorted(groups)
            more = f", +{len(listed) - LISTED_GROUPS} more" if len(listed) > LISTED_GROUPS else ""
            name += f" (<group>: {', '.join(listed[:LISTED_GROUPS])}{more})"
        out.append(name)
    return sorted(out)
