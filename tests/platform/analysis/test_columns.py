"""One grammar for per-group and reliability-bin metric names, checked against what the
trainable, the bootstrap and the registry really write."""

from __future__ import annotations

import pytest
import torch

from regtune.platform.analysis.columns import (
    detail_columns,
    group_columns,
    group_rate_columns,
    is_final_report,
    metric_choices,
    reliability_columns,
)
from regtune.platform.registry.evaluation import group_rates as registry_group_rates
from regtune.trainables.bootstrap import fairness_intervals
from regtune.trainables.metric_names import (
    GroupMetric,
    ReliabilityMetric,
    parse_group_metric,
    parse_reliability_name,
    reliability_name,
)
from regtune.trainables.metrics import group_accuracy, reliability_metrics


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("test_selection_rate_Female", GroupMetric("test", "positive_rate", "Female", "")),
        ("test_tpr_African_American_ci_low", GroupMetric("test", "tpr", "African_American", "low")),
        ("test_fpr_Male_ci_high", GroupMetric("test", "fpr", "Male", "high")),
        ("test_acc_Female", GroupMetric("test", "acc", "Female", "")),
        ("test_positive_rate.Female", GroupMetric("test", "positive_rate", "Female", "")),
        ("test_acc.Native-American", GroupMetric("test", "acc", "Native-American", "")),
        ("acc.f", GroupMetric("", "acc", "f", "")),
        ("accuracy_f", GroupMetric("", "acc", "f", "")),
        ("pos_rate.m", GroupMetric("", "positive_rate", "m", "")),
        ("group.x.positive_rate", GroupMetric("", "positive_rate", "x", "")),
        ("val_group.x.tpr", GroupMetric("val", "tpr", "x", "")),
    ],
)
def test_group_names_in_every_spelling(name: str, expected: GroupMetric) -> None:
    assert parse_group_metric(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "val_acc",
        "test_acc",
        "test_raw_acc",
        "robust_acc",
        "test_robust_acc",
        "val_postprocess_acc",
        "test_dp_diff_ci_low",
        "dp_diff",
        "threshold_Female",
        "temperature_all",
        "test_reliability.b03.acc",
        "acc",
        "test_acc_ci_low",
    ],
)
def test_other_metrics_are_not_group_metrics(name: str) -> None:
    assert parse_group_metric(name) is None


def test_reliability_names_round_trip_and_reject_others() -> None:
    assert reliability_name("test", 3, "acc") == "test_reliability.b03.acc"
    assert parse_reliability_name("test_reliability.b03.acc") == ReliabilityMetric("test", 3, "acc")
    assert parse_reliability_name("reliability.b15.count") == ReliabilityMetric("", 15, "count")
    for bad in ("test_reliability.b3.acc", "test_reliability.b03.mean", "test_ece", "b03.acc"):
        assert parse_reliability_name(bad) is None
    with pytest.raises(ValueError, match="stat must be one of conf, acc, count"):
        reliability_name("test", 1, "mean")


def test_what_the_writers_write_parses() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (400,), generator=g)
    y_pred = torch.randint(0, 2, (400,), generator=g)
    s = torch.randint(0, 2, (400,), generator=g)
    names = ["Female", "Native-American"]
    boot = {
        f"test_{k}": v for k, v in fairness_intervals(y, y_pred, s, names, n_resamples=50).items()
    }
    acc = group_accuracy(y, y_pred, s, names)
    registry = registry_group_rates(y, y_pred, s, names, binary=True)
    columns = [*boot, *acc]  # what the trainable's final report writes
    found = group_columns(columns)
    assert found["test_positive_rate"] == {
        "Female": "test_selection_rate_Female",
        "Native_American": "test_selection_rate_Native_American",
    }
    assert set(found) == {"test_positive_rate", "test_tpr", "test_fpr", "test_acc"}
    # The registry's spelling of the same stats reads the same way.
    assert group_columns(registry)["test_positive_rate"] == {
        "Female": "test_positive_rate.Female",
        "Native-American": "test_positive_rate.Native-American",
    }
    assert group_rate_columns(registry)[0].low is None  # no interval in that spelling
    # A registry version writes both spellings; each group is shown once, with its interval.
    both = group_rate_columns([*registry, *boot])
    positive = [r for r in both if r.stat == "positive_rate"]
    assert [(r.group, r.value, r.low) for r in positive] == [
        ("Female", "test_selection_rate_Female", "test_selection_rate_Female_ci_low"),
        (
            "Native_American",
            "test_selection_rate_Native_American",
            "test_selection_rate_Native_American_ci_low",
        ),
    ]
    assert found["test_acc"]["Native_American"] == "test_acc_Native_American"
    rates = {(r.stat, r.group): r for r in group_rate_columns(columns)}
    tpr = rates[("tpr", "Female")]
    assert (tpr.value, tpr.low, tpr.high) == (
        "test_tpr_Female",
        "test_tpr_Female_ci_low",
        "test_tpr_Female_ci_high",
    )
    assert rates[("acc", "Female")].low == "test_acc_Female_ci_low"
    bins = reliability_metrics(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]))
    by_split = reliability_columns([*bins, *columns])
    assert set(by_split) == {"test"} and sorted(by_split["test"]) == list(range(16))
    assert by_split["test"][14] == {
        "conf": "test_reliability.b14.conf",
        "acc": "test_reliability.b14.acc",
        "count": "test_reliability.b14.count",
    }
    detail = set(detail_columns([*bins, *columns, "val_acc"]))
    assert set(bins) <= detail and "test_tpr_Female_ci_low" in detail
    assert "test_tpr_Female" not in detail and "val_acc" not in detail
    assert is_final_report("test_reliability.b01.acc") and is_final_report("reliability.b01.acc")
    assert not is_final_report("val_acc")


def test_metric_choices_collapse_bins_groups_and_interval_ends() -> None:
    bins = [
        reliability_name("test", slot, stat)
        for slot in range(16)
        for stat in ("conf", "acc", "count")
    ]
    groups = [
        f"test_selection_rate_{g}{end}" for g in ("F", "M") for end in ("", "_ci_low", "_ci_high")
    ]
    plain = ["val_acc", "test_dp_diff", "test_dp_diff_ci_low", "test_dp_diff_ci_high", "ece_ci_low"]
    choices = metric_choices([*bins, *groups, *plain, "group.F.acc", "group.M.acc"])
    assert choices == [
        "ece_ci_low",
        "group.<group>.acc (<group>: F, M)",
        "test_dp_diff[_ci_{low,high}]",
        "test_reliability.bNN.{conf,acc,count}",
        "test_selection_rate_<group>[_ci_{low,high}] (<group>: F, M)",
        "val_acc",
    ]
