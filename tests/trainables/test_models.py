"""build_model: shapes, layers, spectral norm, bad shapes."""

from __future__ import annotations

from typing import TypeVar

import pytest
import torch
from torch import nn

from regtune.errors import SpecError
from regtune.trainables.config import ModelConfig
from regtune.trainables.models import CNN_NEEDS_IMAGE, build_model, model_device

M = TypeVar("M", bound=nn.Module)


def _layers(model: nn.Module, kind: type[M]) -> list[M]:
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize(
    ("arch", "shape"),
    [("logreg", (30,)), ("mlp", (30,)), ("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("cnn", (3, 5, 7))],
)
def test_flat_inputs_give_logits(arch: str, shape: tuple[int, ...]) -> None:
    model = build_model(ModelConfig(arch=arch, width=16, depth=2), input_shape=shape, n_classes=3)
    n_features = int(torch.tensor(shape).prod())
    out = model(torch.randn(5, n_features))
    assert out.shape == (5, 3)


def test_logreg_is_one_linear() -> None:
    model = build_model(ModelConfig(arch="logreg"), input_shape=(7,), n_classes=2)
    (linear,) = _layers(model, nn.Linear)
    assert (linear.in_features, linear.out_features) == (7, 2)
    x = torch.randn(4, 7)
    torch.testing.assert_close(model(x), x @ linear.weight.T + linear.bias)


def test_mlp_has_depth_hidden_layers_with_dropout() -> None:
    cfg = ModelConfig(arch="mlp", width=24, depth=3, dropout=0.25)
    model = build_model(cfg, input_shape=(10,), n_classes=4)
    linears = _layers(model, nn.Linear)
    assert [(m.in_features, m.out_features) for m in linears] == [
        (10, 24),
        (24, 24),
        (24, 24),
        (24, 4),
    ]
    dropouts = _layers(model, nn.Dropout)
    assert len(dropouts) == 3
    assert all(d.p == 0.25 for d in dropouts)
    assert len(_layers(model, nn.ReLU)) == 3


def test_cnn_layers() -> None:
    cfg = ModelConfig(arch="cnn", width=32, dropout=0.1)
    model = build_model(cfg, input_shape=(1, 8, 8), n_classes=10)
    convs = _layers(model, nn.Conv2d)
    assert [c.out_channels for c in convs] == [32, 64]
    linears = _layers(model, nn.Linear)
    assert [(m.in_features, m.out_features) for m in linears] == [(64 * 4 * 4, 32), (32, 10)]


@pytest.mark.parametrize("shape", [(30,), (8, 8), (1, 1, 8), (1, 8, 8, 1)])
def test_cnn_rejects_non_image_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(SpecError) as info:
        build_model(ModelConfig(arch="cnn"), input_shape=shape, n_classes=2)
    assert str(info.value) == CNN_NEEDS_IMAGE.format(shape=shape)
    assert "model.arch" in str(info.value)
    assert "'mlp'" in str(info.value)


@pytest.mark.parametrize("shape", [(), (0,), (3, -1), [4]])
def test_rejects_malformed_input_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(SpecError, match="input_shape"):
        build_model(ModelConfig(arch="mlp"), input_shape=shape, n_classes=2)


def test_rejects_one_class() -> None:
    with pytest.raises(SpecError, match="n_classes"):
        build_model(ModelConfig(arch="logreg"), input_shape=(4,), n_classes=1)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_spectral_norm_caps_top_singular_value(arch: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, width=64, depth=2)
    model = build_model(cfg, input_shape=(1, 8, 8), n_classes=10, spectral_norm=True)
    model.train()
    with torch.no_grad():
        for _ in range(30):  # each training forward runs one more power iteration
            model(torch.randn(4, 64))
    model.eval()
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert len(layers) == (3 if arch == "mlp" else 4)
    for layer in layers:
        assert hasattr(layer, "parametrizations")
        weight = layer.weight.detach().flatten(1)
        top = torch.linalg.matrix_norm(weight, ord=2).item()
        assert top == pytest.approx(1.0, abs=0.05)
        raw = layer.parametrizations.weight.original.detach().flatten(1)
        assert torch.linalg.matrix_norm(raw, ord=2).item() != pytest.approx(1.0, abs=0.02)


def test_state_dict_restores_into_same_build() -> None:
    cfg = ModelConfig(arch="mlp", width=8, depth=1)
    a = build_model(cfg, input_shape=(5,), n_classes=2, spectral_norm=True)
    b = build_model(cfg, input_shape=(5,), n_classes=2, spectral_norm=True)
    b.load_state_dict(a.state_dict())
    a.eval()
    b.eval()
    x = torch.randn(3, 5)
    torch.testing.assert_close(a(x), b(x))


def test_model_device() -> None:
    model = build_model(ModelConfig(arch="logreg"), input_shape=(3,), n_classes=2)
    assert model_device(model) == torch.device("cpu")
    assert model_device(nn.Sequential()) == torch.device("cpu")
