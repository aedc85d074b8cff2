"""``save_version`` refuses weights holding a NaN or an infinity, naming the tensor.

Before: a member whose weights were NaN (a diverged run) was registered like any
other (``nanmodel:1``); every answer it then gave was a 500 from the server and,
from ``regtune.load().predict``, an arg-max over NaN.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from regtune.errors import CheckpointError
from regtune.platform.registry import Member, save_version
from regtune.platform.registry.version import check_finite_tensors
from regtune.trainables.loop import RunResult


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_weight_is_refused_and_nothing_is_written(
    tiny_run: RunResult, registry: str, bad: float
) -> None:
    state = {k: v.detach().clone() for k, v in tiny_run.model.state_dict().items()}
    key = sorted(k for k in state if k.endswith("weight"))[-1]
    state[key].view(-1)[:3] = bad
    member = Member(config=tiny_run.config, state=state)
    with pytest.raises(CheckpointError) as refused:
        save_version("nanmodel", [member], tiny_run.dataset, root=registry, metrics={})
    assert str(refused.value) == (
        f"tensor 'members.0.{key}' holds 3 non-finite values (NaN or infinite) of "
        f"{state[key].numel()}; a model version needs finite weights (did training "
        "diverge?); nothing was written"
    )
    assert not (Path(registry) / "nanmodel").exists()


def test_the_second_member_is_named(tiny_run: RunResult, registry: str) -> None:
    good = Member.from_model(tiny_run.config, tiny_run.model)
    state = {k: v.detach().clone() for k, v in tiny_run.model.state_dict().items()}
    key = sorted(state)[0]
    state[key].view(-1)[0] = float("nan")
    with pytest.raises(CheckpointError, match=rf"^tensor 'members\.1\.{key}' holds 1 non-finite"):
        save_version("ens", [good, Member(tiny_run.config, state)], tiny_run.dataset, root=registry)


def test_integer_tensors_are_not_checked() -> None:
    check_finite_tensors({"codes": torch.tensor([1, 2, 3], dtype=torch.int8)})
    check_finite_tensors({"w": torch.zeros(2)})
