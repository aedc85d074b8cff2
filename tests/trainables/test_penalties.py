"""Weight penalties, max-norm, input noise, mixup, label smoothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regtune.errors import DataError, SpecError
from regtune.trainables.config import ElasticNetConfig, ModelConfig, PenaltiesConfig
from regtune.trainables.metrics import sparsity
from regtune.trainables.models import build_model
from regtune.trainables.penalties import (
    BAD_MIXUP_ALPHA,
    add_input_noise,
    apply_max_norm,
    feature_mask,
    mixup,
    smooth_targets,
    soft_cross_entropy,
    weight_matrices,
    weight_penalty,
)


def _problem(n: int = 400, d: int = 20, informative: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes that only the first ``informative`` features separate."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = (x[:, :informative].sum(dim=1) > 0).long()
    return x, y


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, p: PenaltiesConfig) -> None:
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(300):
        loss = F.cross_entropy(model(x), y, label_smoothing=p.label_smoothing)
        loss = loss + weight_penalty(model, p)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _mlp(d: int = 20) -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="mlp", width=16, depth=1), input_shape=(d,), n_classes=2)


def test_weight_penalty_formula_excludes_biases() -> None:
    model = _mlp(6)
    weights = weight_matrices(model)
    assert [tuple(w.shape) for w in weights] == [(16, 6), (2, 16)]
    l1 = sum(w.abs().sum() for w in weights)
    l2 = sum(w.pow(2).sum() for w in weights)
    p = PenaltiesConfig(l1=0.3, l2=0.2, elastic_net=ElasticNetConfig(strength=0.5, l1_ratio=0.25))
    expected = 0.3 * l1 + 0.2 * l2 + 0.5 * (0.25 * l1 + 0.75 / 2 * l2)
    got = weight_penalty(model, p)
    assert got.ndim == 0
    torch.testing.assert_close(got, torch.as_tensor(expected))
    got.backward()
    assert all(b.grad is None for n, b in model.named_parameters() if n.endswith("bias"))


def test_zero_penalty_is_constant() -> None:
    model = _mlp(6)
    got = weight_penalty(model, PenaltiesConfig())
    assert got.item() == 0.0
    assert not got.requires_grad
    assert got.grad_fn is None


def test_l1_raises_sparsity() -> None:
    x, y = _problem()
    plain, sparse = _mlp(), _mlp()
    _train(plain, x, y, PenaltiesConfig())
    _train(sparse, x, y, PenaltiesConfig(l1=3e-3))
    assert sparsity(sparse) > sparsity(plain) + 0.25


def test_label_smoothing_lowers_confidence() -> None:
    x, y = _problem()
    hard, smooth = _mlp(), _mlp()
    _train(hard, x, y, PenaltiesConfig())
    _train(smooth, x, y, PenaltiesConfig(label_smoothing=0.2))
    with torch.no_grad():
        conf_hard = hard(x).softmax(dim=1).max(dim=1).values.mean()
        conf_smooth = smooth(x).softmax(dim=1).max(dim=1).values.mean()
    assert conf_smooth < conf_hard - 0.02
    assert conf_smooth <= 1 - 0.2 / 2 + 0.02  # the smoothed target's own confidence


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_smooth_targets_match_builtin_label_smoothing(eps: float) -> None:
    logits = torch.randn(9, 4, generator=torch.Generator().manual_seed(1))
    y = torch.arange(9) % 4
    target = smooth_targets(y, 4, eps)
    torch.testing.assert_close(target.sum(dim=1), torch.ones(9))
    torch.testing.assert_close(
        soft_cross_entropy(logits, target), F.cross_entropy(logits, y, label_smoothing=eps)
    )


def test_smooth_targets_rejects_bad_eps() -> None:
    with pytest.raises(SpecError, match="label_smoothing"):
        smooth_targets(torch.tensor([0, 1]), 2, 1.0)


def test_max_norm_caps_rows_and_filters() -> None:
    torch.manual_seed(0)
    cnn = build_model(ModelConfig(arch="cnn", width=8), input_shape=(1, 4, 4), n_classes=3)
    with torch.no_grad():
        for w in weight_matrices(cnn):
            w.mul_(10.0)
            w[0].mul_(1e-4)  # one unit already under the cap must stay as it is
    before = [w.detach().clone() for w in weight_matrices(cnn)]
    apply_max_norm(cnn, 0.5)
    for w, old in zip(weight_matrices(cnn), before, strict=True):
        norms = w.detach().flatten(1).norm(dim=1)
        assert norms.max().item() <= 0.5 + 1e-5
        torch.testing.assert_close(w[0], old[0])
        # Rescaled, not clipped: each row keeps its direction.
        cos = F.cosine_similarity(w.detach().flatten(1), old.flatten(1), dim=1)
        torch.testing.assert_close(cos, torch.ones_like(cos))


def test_input_noise_only_on_masked_features_and_reproducible() -> None:
    x = torch.zeros(50, 4)
    mask = torch.tensor([True, False, True, False])
    a = add_input_noise(x, 0.5, mask, torch.Generator().manual_seed(3))
    b = add_input_noise(x, 0.5, mask, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert torch.equal(a[:, ~mask], x[:, ~mask])
    assert a[:, mask].std().item() == pytest.approx(0.5, rel=0.2)
    assert add_input_noise(x, 0.0, mask, None) is x


def test_feature_mask_rejects_wrong_shape_or_dtype() -> None:
    x = torch.zeros(2, 3)
    with pytest.raises(DataError, match=r"\(3,\)"):
        feature_mask(x, torch.ones(4, dtype=torch.bool))
    with pytest.raises(DataError, match="bool"):
        feature_mask(x, torch.ones(3))


def test_mixup_reproducible_and_convex() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 5, generator=g)
    y = torch.eye(32)  # one class per example, so the mixed labels reveal lam and the pairing
    xa, ya = mixup(x, y, 0.4, torch.Generator().manual_seed(7))
    xb, yb = mixup(x, y, 0.4, torch.Generator().manual_seed(7))
    xc, _ = mixup(x, y, 0.4, torch.Generator().manual_seed(8))
    assert torch.equal(xa, xb)
    assert torch.equal(ya, yb)
    assert not torch.equal(xa, xc)
    torch.testing.assert_close(ya.sum(dim=1), torch.ones(32))
    lam = ya.diagonal()
    moved = lam < 1.0
    assert moved.any()
    assert torch.allclose(lam[moved], lam[moved][0])  # one lam for the whole batch
    partner = (ya - torch.diag(lam)).argmax(dim=1)
    expected = lam[:, None] * x + (1.0 - lam[:, None]) * x[partner]
    torch.testing.assert_close(xa[moved], expected[moved])
    torch.testing.assert_close(xa[~moved], x[~moved])


def test_mixup_rejects_nonpositive_alpha() -> None:
    x, y = torch.zeros(2, 1), torch.eye(2)
    with pytest.raises(SpecError) as info:
        mixup(x, y, 0.0, None)
    assert str(info.value) == BAD_MIXUP_ALPHA.format(alpha=0.0)
