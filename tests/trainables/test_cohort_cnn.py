"""CNN members fused with grouped convolutions equal their solo runs.

Real digits (a slice), real solo ``Trainer`` runs as the reference, the
checkpoint through safetensors on disk. Tolerance as for MLP cohorts
(tests/trainables/test_cohort.py): relative 1e-4, absolute 1e-6 on metrics.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from regtune.trainables.checkpoint import save_tree
from regtune.trainables.cohort import fusable, make_cohort
from regtune.trainables.cohort_fused import FusedCohort
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
    """Digits cut to 160 training rows (batches of 128 and 32) and 50 validation/test rows."""
    val, test = _cut(digits.val, 50), _cut(digits.test, 50)
    return dataclasses.replace(digits, train=_cut(digits.train, 160), val=val, test=test)


def _cnn(**over: Any) -> dict[str, Any]:
    return _cfg(**{"model.arch": "cnn", **over})


#: CNN members covering every regularizer a cohort supports, own seeds.
CNN: dict[str, dict[str, Any]] = {
    "plain_robust": _cnn(
        **{"training.robust_every": 2, "training.robust_samples": 20, "training.robust_steps": 2}
    ),
    "l1_l2_max_norm": _cnn(
        **{
            "penalties.l1": 1e-3,
            "penalties.l2": 1e-3,
            "penalties.max_norm": 0.5,
            "training.lr": 1e-2,
            "training.seed": 1,
        }
    ),
    "decay_dropout_smooth_noise": _cnn(
        **{
            "penalties.weight_decay": 0.05,
            "model.dropout": 0.3,
            "penalties.label_smoothing": 0.1,
            "penalties.input_noise": 0.1,
            "training.seed": 2,
        }
    ),
    "mixup_cosine": _cnn(
        **{"penalties.mixup": 0.4, "training.lr_schedule": "cosine", "training.seed": 3}
    ),
}
#: Tolerance on a CNN member's weights, relative in L2 norm per tensor: the
#: grouped convolution's backward sums in another order than the solo one's,
#: and AdamW (or an L1 term's sign) moves a weight whose gradient is float
#: noise by about lr per step, in either direction, so single entries can
#: differ by 1e-4 while the tensor agrees to 1e-7 (measured: at most 9e-8).
WEIGHT_RTOL = 1e-5


@pytest.fixture(scope="module")
def fused_cnn(small: Dataset) -> tuple[FusedCohort, list[dict[str, dict[str, float]]]]:
    cohort = FusedCohort(CNN, dataset=small)
    return cohort, _run(cohort)


@pytest.mark.parametrize("member", list(CNN))
def test_fused_cnn_member_equals_its_solo_run(
    fused_cnn: tuple[FusedCohort, list[dict[str, dict[str, float]]]], small: Dataset, member: str
) -> None:
    cohort, epochs = fused_cnn
    solo = _solo(CNN[member], small)
    _assert_rows_close([rows[member] for rows in epochs], solo.history)
    state = cohort.state_dict(member)
    for name, tensor in solo.model.state_dict().items():
        diff = torch.linalg.vector_norm(state["model"][name] - tensor)
        assert diff <= WEIGHT_RTOL * torch.linalg.vector_norm(tensor), name
    test, want = cohort.finish(member), solo.finish()
    for key, value in want.items():
        assert test[key] == pytest.approx(value, rel=RTOL, abs=1e-5, nan_ok=True), key


def test_fused_cnn_sgd_and_checkpoint_restore_into_a_solo_trainer(
    small: Dataset, tmp_path: Path
) -> None:
    sgd = {"training.optimizer": "sgd", "training.lr": 0.05, "training.momentum": 0.9}
    configs = {
        "a": _cnn(**sgd, **{"model.dropout": 0.2, "penalties.l2": 1e-3}),
        "b": _cnn(**sgd, **{"training.seed": 1, "penalties.max_norm": 1.0}),
    }
    assert fusable(configs, device="cpu") == [["a"], ["b"]]  # does not pay on a CPU
    assert fusable(configs, device="cpu", cnn_on_cpu=True) == [["a", "b"]]
    assert fusable(configs, device="cuda") == [["a", "b"]]
    cohort = make_cohort(configs, dataset=small, cnn_on_cpu=True)
    assert isinstance(cohort, FusedCohort)
    cohort.run_epoch()
    state = cohort.state_dict("a")
    assert _shape_of(state) == _shape_of(_solo(configs["a"], small, epochs=1).state_dict())
    save_tree(state, tmp_path / "ckpt")
    resumed = Trainer(configs["a"], dataset=small)
    resumed.restore(tmp_path / "ckpt")
    resumed.run_epoch()
    _assert_rows_close(resumed.history, _solo(configs["a"], small).history)
    rest = _run(cohort)
    _assert_rows_close([rows["a"] for rows in rest], resumed.history[1:])
    _assert_rows_close([rows["b"] for rows in rest], _solo(configs["b"], small).history[1:])


def test_cnn_members_of_another_width_form_another_group() -> None:
    configs = {"a": _cnn(), "b": _cnn(**{"model.width": 32}), "c": _cnn(**{"training.seed": 1})}
    assert fusable(configs, device="cpu", cnn_on_cpu=True) == [["a", "c"], ["b"]]
