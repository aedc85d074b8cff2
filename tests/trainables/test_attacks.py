"""FGSM-RS, PGD, TRADES and robust accuracy on a small undefended model."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regtune.errors import DataError, SpecError
from regtune.trainables.attacks import fgsm_rs, pgd, robust_accuracy, trades_loss
from regtune.trainables.config import ModelConfig
from regtune.trainables.models import build_model
from regtune.trainables.optim import AdamW

D = 10
EPS = 0.5
MASK = torch.tensor([True] * 7 + [False] * 3)
Attack = Callable[..., Tensor]


def _data(n: int = 600) -> tuple[Tensor, Tensor]:
    """Two Gaussian blobs, 1.2 std apart along every feature (about 96% separable)."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, D, generator=g) + 0.6 * (2 * y[:, None] - 1)
    return x, y


def _trained(arch: str = "logreg") -> nn.Module:
    torch.manual_seed(0)
    x, y = _data()
    model = build_model(ModelConfig(arch=arch, width=32, depth=1), input_shape=(D,), n_classes=2)
    opt = AdamW(model.parameters(), lr=0.05, weight_decay=0.0)  # Adam: no decay
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model


@pytest.fixture(scope="module")
def logreg() -> nn.Module:
    return _trained("logreg")


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    return _trained("mlp")


def _acc(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).double().mean())


def _fgsm(model: nn.Module, x: Tensor, y: Tensor, **kw: object) -> Tensor:
    return fgsm_rs(model, x, y, eps=EPS, **kw)  # type: ignore[arg-type]


def _pgd(model: nn.Module, x: Tensor, y: Tensor, **kw: object) -> Tensor:
    return pgd(model, x, y, eps=EPS, steps=10, restarts=2, **kw)  # type: ignore[arg-type]


ATTACKS = [pytest.param(_fgsm, id="fgsm_rs"), pytest.param(_pgd, id="pgd")]


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("arch", ["logreg", "mlp"])
def test_attacks_lower_accuracy(
    attack: Attack, arch: str, logreg: nn.Module, mlp: nn.Module
) -> None:
    model = logreg if arch == "logreg" else mlp
    x, y = _data()
    clean = _acc(model, x, y)
    assert clean > 0.9
    x_adv = attack(model, x, y, generator=torch.Generator().manual_seed(0))
    assert _acc(model, x_adv, y) < clean - 0.1


@pytest.mark.parametrize("attack", ATTACKS)
def test_attacks_respect_eps_mask_and_bounds(attack: Attack, mlp: nn.Module) -> None:
    x, y = _data()
    x = torch.sigmoid(x)  # valid "pixels" in (0, 1); many close to the bounds
    x_adv = attack(mlp, x, y, mask=MASK, bounds=(0.0, 1.0), generator=torch.Generator())
    delta = x_adv - x
    assert delta.abs().max().item() <= EPS + 1e-6
    assert torch.equal(x_adv[:, ~MASK], x[:, ~MASK])
    assert x_adv.min().item() >= 0.0
    assert x_adv.max().item() <= 1.0
    assert delta[:, MASK].abs().max().item() > 0.1
    assert not x_adv.requires_grad


@pytest.mark.parametrize("attack", [*ATTACKS, pytest.param(None, id="trades")])
def test_attacks_leave_parameters_grads_and_mode_alone(
    attack: Attack | None, mlp: nn.Module
) -> None:
    x, y = _data(64)
    for param in mlp.parameters():
        param.grad = torch.full_like(param, 0.125)
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    mlp.train()
    try:
        if attack is None:
            trades_loss(mlp, x, y, eps=EPS, steps=3, beta=6.0, mask=MASK)
        else:
            attack(mlp, x, y, mask=MASK)
        assert mlp.training
        for key, value in mlp.state_dict().items():
            assert torch.equal(value, before[key])
        for param in mlp.parameters():
            assert param.grad is not None
            assert torch.equal(param.grad, torch.full_like(param, 0.125))
    finally:
        for param in mlp.parameters():
            param.grad = None
        mlp.eval()


@pytest.mark.parametrize("arch", ["logreg", "mlp"])
def test_pgd_at_least_as_strong_as_fgsm(arch: str, logreg: nn.Module, mlp: nn.Module) -> None:
    model = logreg if arch == "logreg" else mlp
    x, y = _data()
    g = torch.Generator().manual_seed(0)
    fgsm_acc = _acc(model, fgsm_rs(model, x, y, eps=0.3, generator=g), y)
    pgd_acc = _acc(model, pgd(model, x, y, eps=0.3, steps=10, generator=g), y)
    assert pgd_acc <= fgsm_acc


def test_restarts_keep_the_worst_per_example(mlp: nn.Module) -> None:
    x, y = _data()
    one = pgd(mlp, x, y, eps=0.3, steps=3, restarts=1, generator=torch.Generator().manual_seed(1))
    many = pgd(mlp, x, y, eps=0.3, steps=3, restarts=4, generator=torch.Generator().manual_seed(1))
    # The first restart draws the same start, so four restarts can only do better.
    assert _acc(mlp, many, y) <= _acc(mlp, one, y)
    with torch.no_grad():
        loss_one = F.cross_entropy(mlp(one), y, reduction="none")
        loss_many = F.cross_entropy(mlp(many), y, reduction="none")
    still_right = mlp(many).argmax(dim=1) == y
    assert torch.all(loss_many[still_right] >= loss_one[still_right] - 1e-6)


def test_attacks_reproducible_from_generator(mlp: nn.Module) -> None:
    x, y = _data(100)
    a = pgd(mlp, x, y, eps=EPS, steps=3, generator=torch.Generator().manual_seed(5))
    b = pgd(mlp, x, y, eps=EPS, steps=3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_zero_eps_returns_inputs(mlp: nn.Module) -> None:
    x, y = _data(10)
    assert torch.equal(fgsm_rs(mlp, x, y, eps=0.0), x)
    assert torch.equal(pgd(mlp, x, y, eps=0.0, steps=5), x)


def test_trades_beta_zero_equals_cross_entropy(mlp: nn.Module) -> None:
    x, y = _data(200)
    mlp.eval()
    loss, logits = trades_loss(mlp, x, y, eps=EPS, steps=3, beta=0.0, generator=torch.Generator())
    with torch.no_grad():
        expected_logits = mlp(x)
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(loss, F.cross_entropy(expected_logits, y))
    robust, _ = trades_loss(mlp, x, y, eps=EPS, steps=3, beta=6.0, generator=torch.Generator())
    assert robust.item() > loss.item() + 1e-3


def test_trades_loss_trains_parameters() -> None:
    model = _trained("mlp")
    x, y = _data(64)
    loss, _ = trades_loss(model, x, y, eps=EPS, steps=2, step_size=0.2, beta=1.0, mask=MASK)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_robust_accuracy_eval_mode_and_restores(mlp: nn.Module) -> None:
    x, y = _data()
    mlp.train()
    try:
        robust = robust_accuracy(
            mlp, x, y, eps=EPS, steps=10, generator=torch.Generator(), batch_size=128
        )
        assert mlp.training
    finally:
        mlp.eval()
    assert 0.0 <= robust < _acc(mlp, x, y) - 0.1
    weak = robust_accuracy(mlp, x, y, eps=0.05, steps=10, generator=torch.Generator())
    assert weak > robust


def test_robust_accuracy_rejects_empty(mlp: nn.Module) -> None:
    with pytest.raises(DataError, match="at least one example"):
        robust_accuracy(mlp, torch.zeros(0, D), torch.zeros(0, dtype=torch.long), eps=0.1, steps=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": -0.1, "steps": 3}, "eps"),
        ({"eps": 0.1, "steps": 0}, "steps"),
        ({"eps": 0.1, "steps": 3, "restarts": 0}, "restarts"),
        ({"eps": 0.1, "steps": 3, "bounds": (1.0, 0.0)}, "bounds"),
        ({"eps": 0.1, "steps": 3, "step_size": 0.0}, "step_size"),
    ],
)
def test_pgd_rejects_bad_settings(kwargs: dict[str, object], match: str, logreg: nn.Module) -> None:
    x, y = _data(4)
    with pytest.raises(SpecError, match=match):
        pgd(logreg, x, y, **kwargs)  # type: ignore[arg-type]
