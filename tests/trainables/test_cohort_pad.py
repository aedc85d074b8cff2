"""Width padding: MLP members of different widths in one batched model.

Every padded member is checked against the same configuration trained alone
(a real ``Trainer`` on a slice of digits), its padding is checked to stay
exactly zero, and its checkpoint (safetensors on disk) is restored into a
solo ``Trainer``. Tolerance: relative 1e-4, absolute 1e-6 on metrics, as for
unpadded cohorts (tests/trainables/test_cohort.py): a padded matmul sums
extra exact zeros, in another blocking order than the narrow solo one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from regtune.errors import SpecError
from regtune.trainables.checkpoint import save_tree
from regtune.trainables.cohort import fusable, make_cohort, pad_key
from regtune.trainables.cohort_fused import FusedCohort
from regtune.trainables.cohort_pad import Layout, group_cost, mlp_macs, width_groups
from regtune.trainables.config import parse_train_config
from regtune.trainables.data import Dataset
from regtune.trainables.loop import Trainer
from tests.trainables.test_cohort import (
    RTOL,
    _assert_rows_close,
    _cfg,
    _cut,
    _run,
    _shape_of,
    _solo,
)


@pytest.fixture(scope="module")
def small(digits: Dataset) -> Dataset:
    """Digits cut to 250 training and 100 validation/test rows (2 batches of 128)."""
    val, test = _cut(digits.val, 100), _cut(digits.test, 100)
    return dataclasses.replace(digits, train=_cut(digits.train, 250), val=val, test=test)


#: One member per regularizer, each at its own width (8 .. 40), own seed.
PADDED: dict[str, dict[str, Any]] = {
    "plain": _cfg(**{"model.width": 40}),
    "l1": _cfg(**{"model.width": 8, "penalties.l1": 1e-3, "training.seed": 1}),
    "l2": _cfg(**{"model.width": 12, "penalties.l2": 1e-3, "training.seed": 2}),
    "elastic_net": _cfg(
        **{"model.width": 20, "penalties.elastic_net": {"strength": 1e-3, "l1_ratio": 0.3}}
    ),
    "weight_decay": _cfg(**{"model.width": 24, "penalties.weight_decay": 0.05}),
    "dropout": _cfg(**{"model.width": 16, "model.dropout": 0.3, "training.seed": 4}),
    "label_smoothing": _cfg(**{"model.width": 28, "penalties.label_smoothing": 0.1}),
    "input_noise": _cfg(**{"model.width": 32, "penalties.input_noise": 0.1, "training.seed": 5}),
    "mixup": _cfg(**{"model.width": 36, "penalties.mixup": 0.4}),
    "max_norm": _cfg(**{"model.width": 10, "penalties.max_norm": 0.5, "training.lr": 1e-2}),
    "onecycle": _cfg(**{"model.width": 14, "training.lr_schedule": "onecycle"}),
    "robust_acc": _cfg(
        **{
            "model.width": 18,
            "training.robust_every": 2,
            "training.robust_samples": 40,
            "training.robust_steps": 3,
        }
    ),
    "early_stopping": _cfg(
        **{
            "model.width": 22,
            "training.early_stopping": {"patience": 1, "metric": "val_acc", "mode": "max"},
        }
    ),
    "calibration": _cfg(
        **{"model.width": 26, "training.calibration": "temperature", "model.dropout": 0.1}
    ),
}


def _assert_padding_is_zero(cohort: FusedCohort) -> None:
    """Every batch entry outside a member's own layout is exactly 0 (params and
    optimizer state)."""
    tensors = [cohort._flat, *vars(cohort._opt).values()]
    for k, index in enumerate(cohort._embed):
        if index is None:
            continue
        padding = torch.ones(cohort._layout.size, dtype=torch.bool)
        padding[index] = False
        for t in tensors:
            if isinstance(t, torch.Tensor):
                assert torch.count_nonzero(t[k, padding]) == 0


@pytest.fixture(scope="module")
def padded(small: Dataset) -> tuple[FusedCohort, list[dict[str, dict[str, float]]]]:
    cohort = FusedCohort(PADDED, dataset=small)
    assert cohort._layout == Layout.of(Trainer(PADDED["plain"], dataset=small).model)
    epochs = []
    while rows := cohort.run_epoch():
        _assert_padding_is_zero(cohort)
        epochs.append(rows)
    return cohort, epochs


@pytest.mark.parametrize("member", list(PADDED))
def test_padded_member_equals_its_solo_run(
    padded: tuple[FusedCohort, list[dict[str, dict[str, float]]]], small: Dataset, member: str
) -> None:
    cohort, epochs = padded
    solo = _solo(PADDED[member], small)
    _assert_rows_close([rows[member] for rows in epochs if member in rows], solo.history)
    state = cohort.state_dict(member)
    assert _shape_of(state) == _shape_of(solo.state_dict())  # the padding is stripped
    for name, tensor in solo.model.state_dict().items():
        torch.testing.assert_close(state["model"][name], tensor, rtol=RTOL, atol=1e-5)
    test, want = cohort.finish(member), solo.finish()
    assert set(test) == set(want)
    for key, value in want.items():
        assert test[key] == pytest.approx(value, rel=RTOL, abs=1e-5, nan_ok=True), key


def test_padded_sgd_members_with_momentum_and_decay_equal_solo(small: Dataset) -> None:
    sgd = {"training.optimizer": "sgd", "training.lr": 0.05}
    configs = {
        "momentum": _cfg(
            **sgd,
            **{"model.width": 8, "training.momentum": 0.9, "penalties.weight_decay": 1e-3},
        ),
        "no_momentum": _cfg(**sgd, **{"model.width": 24, "training.momentum": 0.0}),
        "dropout_l1": _cfg(
            **sgd, **{"model.width": 16, "model.dropout": 0.2, "penalties.l1": 1e-3}
        ),
    }
    cohort = FusedCohort(configs, dataset=small)
    epochs = []
    while rows := cohort.run_epoch():
        _assert_padding_is_zero(cohort)
        epochs.append(rows)
    for member, cfg in configs.items():
        _assert_rows_close([rows[member] for rows in epochs], _solo(cfg, small).history)


def test_padded_checkpoint_restores_into_a_solo_trainer(small: Dataset, tmp_path: Path) -> None:
    narrow = _cfg(**{"model.width": 8, "model.dropout": 0.2, "penalties.l1": 1e-4})
    configs = {"narrow": narrow, "wide": _cfg(**{"model.width": 32, "training.seed": 5})}
    cohort = FusedCohort(configs, dataset=small)
    cohort.run_epoch()
    state = cohort.state_dict("narrow")
    assert state["model"]["0.weight"].shape == (8, 64)
    assert _shape_of(state) == _shape_of(_solo(narrow, small, epochs=1).state_dict())
    save_tree(state, tmp_path / "ckpt")
    resumed = Trainer(narrow, dataset=small)
    resumed.restore(tmp_path / "ckpt")
    resumed.run_epoch()
    _assert_rows_close(resumed.history, _solo(narrow, small).history)
    _assert_rows_close([cohort.run_epoch()["narrow"]], resumed.history[-1:])


def test_a_solo_checkpoint_joins_a_padded_batch_and_the_batch_narrows(small: Dataset) -> None:
    """load_state_dict pads a solo state in; when the widest member leaves,
    the batch repacks at the next width and the others go on unchanged."""
    narrow = _cfg(**{"model.width": 8, "model.dropout": 0.3, "training.seed": 8})
    configs = {
        "narrow": narrow,
        "mid": _cfg(**{"model.width": 16, "penalties.l2": 1e-3}),
        "wide": _cfg(**{"model.width": 40, "training.seed": 2}),
    }
    cohort = FusedCohort(configs, dataset=small)
    cohort.load_state_dict("narrow", _solo(narrow, small, epochs=1).state_dict())
    cohort.drop("wide")
    rows = _run(cohort)
    assert cohort._layout.shapes[0] == (16, 64)
    solo = _solo(narrow, small).history[1:]
    _assert_rows_close([r["narrow"] for r in rows if "narrow" in r], solo)
    _assert_rows_close([r["mid"] for r in rows], _solo(configs["mid"], small).history)


def test_make_cohort_pads_where_it_pays_and_splits_where_not(small: Dataset) -> None:
    configs = {
        "a": _cfg(**{"model.width": 8}),
        "b": _cfg(**{"model.width": 16, "training.seed": 1}),
        "huge": _cfg(**{"model.width": 512, "training.seed": 2, "training.epochs": 1}),
    }
    assert fusable(configs, dataset=small) == [["huge"], ["a", "b"]]
    assert fusable(configs, dataset=small, pad=False) == [["a"], ["b"], ["huge"]]
    epochs = _run(make_cohort(configs, dataset=small))
    for member, cfg in configs.items():
        _assert_rows_close([r[member] for r in epochs if member in r], _solo(cfg, small).history)


def test_pad_key_ignores_width_but_not_depth() -> None:
    base = parse_train_config(_cfg())
    wider = parse_train_config(_cfg(**{"model.width": 99}))
    deeper = parse_train_config(_cfg(**{"model.depth": 3}))
    assert pad_key(base, "cpu") == pad_key(wider, "cpu")
    assert pad_key(base, "cpu") != pad_key(deeper, "cpu")
    cnn = parse_train_config(_cfg(**{"model.arch": "cnn"}))
    cnn_wider = parse_train_config(_cfg(**{"model.arch": "cnn", "model.width": 99}))
    assert pad_key(cnn, "cpu") is None  # CNNs do not fuse on a CPU by default
    # ... and are never padded.
    assert pad_key(cnn, "cpu", cnn_on_cpu=True) != pad_key(cnn_wider, "cpu", cnn_on_cpu=True)
    assert pad_key(parse_train_config(_cfg(**{"penalties.spectral_norm": True})), "cpu") is None


def test_width_groups_is_the_cheapest_contiguous_partition() -> None:
    # Small widths: one group saves the fixed cost; each width is kept whole.
    assert width_groups({"a": 32, "b": 64, "c": 32}, depth=2) == [["a", "b", "c"]]
    # Padding 4 members from 32 to 1024 costs far more than a second group.
    mix = {"w": 1024, "n1": 32, "n2": 32, "n3": 32, "n4": 32}
    assert width_groups(mix, depth=2) == [["w"], ["n1", "n2", "n3", "n4"]]
    # With no fixed cost per group, every width stands alone.
    assert width_groups({"a": 8, "b": 16}, depth=2, overhead_macs=0.0) == [["b"], ["a"]]
    widths = {f"m{i}": w for i, w in enumerate([32, 64, 128, 256] * 4)}
    groups = width_groups(widths, depth=2, io_features=74)
    best = sum(group_cost([widths[m] for m in g], 2, 74) for g in groups)
    for cut in range(1, 4):  # every two-group split, and no split, cost more or equal
        sizes = sorted({*widths.values()})
        low = [w for w in widths.values() if w in sizes[:cut]]
        high = [w for w in widths.values() if w in sizes[cut:]]
        assert best <= group_cost(low, 2, 74) + group_cost(high, 2, 74)
    assert best <= group_cost(list(widths.values()), 2, 74)
    assert mlp_macs(10, 3, io_features=5) == 10 * 5 + 2 * 100


def test_layout_embed_index_places_each_tensor_in_the_leading_corner() -> None:
    narrow = Layout.of(nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 4)))
    wide = Layout.of(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 4)))
    assert narrow.embed_index(narrow) is None
    index = narrow.embed_index(wide)
    assert index is not None
    row = torch.zeros(wide.size)
    row[index] = torch.arange(1.0, narrow.size + 1)
    w1, b1, w2, b2 = wide.views(row[None])
    assert w1[0, :2].flatten().tolist() == [1, 2, 3, 4, 5, 6] and not w1[0, 2:].any()
    assert b1[0].tolist() == [7, 8, 0, 0, 0]
    assert w2[0, :, :2].flatten().tolist() == list(range(9, 17)) and not w2[0, :, 2:].any()
    assert b2[0].tolist() == [17, 18, 19, 20]
    with pytest.raises(ValueError, match="does not fit"):
        wide.embed_index(narrow)


def test_members_of_another_depth_are_refused_in_one_fused_cohort(small: Dataset) -> None:
    configs = {"a": _cfg(), "b": _cfg(**{"model.depth": 3, "model.width": 8})}
    with pytest.raises(SpecError, match="depth 3"):
        FusedCohort(configs, dataset=small)
