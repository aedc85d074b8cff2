"""The sensitive attribute is never perturbed, whatever its type.

A CSV's numeric 0/1 sensitive column is standardised as a numeric feature; input
noise, adversarial training (FGSM, PGD, TRADES), robust accuracy and the fused
cohort must still leave it exactly as encoded (docs/trainables.md: "the
sensitive attribute stays fixed"), else they move an example across groups.
Built-ins have text sensitive columns: their masks are unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from regtune.errors import SpecError
from regtune.trainables import attacks, penalties
from regtune.trainables.cohort_fused import FusedCohort
from regtune.trainables.config import DatasetConfig
from regtune.trainables.data import Dataset, load_dataset
from regtune.trainables.loop import Trainer
from regtune.trainables.schema import FeatureSchema

ATTACKS: list[dict[str, Any]] = [
    {"method": "fgsm_rs", "eps": 0.5},
    {"method": "pgd", "eps": 0.5, "steps": 3},
    {"method": "trades", "eps": 0.5, "steps": 3},
]


def _numeric_group_csv(tmp_path: Path, *, only_group: bool = False) -> Path:
    rng = np.random.default_rng(0)
    n = 240
    g = rng.integers(0, 2, n)
    x1 = rng.normal(size=n) + 0.8 * g
    table = {"x1": x1, "x2": rng.normal(size=n), "color": rng.choice(["r", "g", "b"], n)}
    if only_group:
        table = {"color": table["color"]}
    table |= {"g": g, "y": (x1 + rng.normal(size=n) > 0.3).astype(int)}
    path = tmp_path / "groups.csv"
    pd.DataFrame(table).to_csv(path, index=False)
    return path


def _cfg(path: Path, **penalty: Any) -> dict[str, Any]:
    return {
        "dataset": {"name": "csv", "path": str(path), "label": "y", "sensitive": "g"},
        "model": {"arch": "mlp", "width": 8, "depth": 1},
        "training": {"epochs": 1, "batch_size": 64, "robust_every": 1, "robust_eps": 0.5},
        "penalties": penalty,
    }


def _g_column(ds: Dataset) -> int:
    return ds.schema.feature_names().index("g")


def _encoded_groups(ds: Dataset) -> set[float]:
    return set(ds.train.x[:, _g_column(ds)].tolist())


def test_the_mask_leaves_out_a_numeric_sensitive_column(tmp_path: Path) -> None:
    ds = load_dataset(DatasetConfig(**_cfg(_numeric_group_csv(tmp_path))["dataset"]))
    names = ds.schema.feature_names()
    assert [f.name for f in ds.schema.numeric] == ["x1", "x2", "g"]
    assert dict(zip(names, ds.perturb_mask.tolist(), strict=True)) == {
        "x1": True,
        "x2": True,
        "g": False,
        "color=b": False,
        "color=g": False,
        "color=r": False,
    }


def test_a_stored_schema_gives_the_same_mask(tmp_path: Path) -> None:
    # The mask is not stored with a model: it is rebuilt from the stored schema,
    # so a model stored before this rule is evaluated with the sensitive column fixed.
    ds = load_dataset(DatasetConfig(**_cfg(_numeric_group_csv(tmp_path))["dataset"]))
    again = FeatureSchema.from_json(ds.schema.to_json())
    assert torch.equal(again.perturb_mask(), ds.perturb_mask)
    assert not bool(again.perturb_mask()[_g_column(ds)])


def test_attacks_and_noise_leave_the_group_column_exactly(tmp_path: Path) -> None:
    ds = load_dataset(DatasetConfig(**_cfg(_numeric_group_csv(tmp_path))["dataset"]))
    col = _g_column(ds)
    model = torch.nn.Sequential(torch.nn.Linear(ds.n_features, 2))
    x, y = ds.train.x[:100], ds.train.y[:100]
    gen = torch.Generator().manual_seed(0)
    moved = {
        "pgd": attacks.pgd(model, x, y, eps=0.5, steps=3, mask=ds.perturb_mask, generator=gen),
        "noise": penalties.add_input_noise(x, 0.3, ds.perturb_mask, gen),
    }
    for name, out in moved.items():
        assert torch.equal(out[:, col], x[:, col]), name
        assert not torch.equal(out[:, 0], x[:, 0]), name  # the other numeric features move


@pytest.mark.parametrize("adversarial", ATTACKS, ids=[a["method"] for a in ATTACKS])
def test_training_never_feeds_a_model_a_moved_group(
    tmp_path: Path, adversarial: dict[str, Any]
) -> None:
    trainer = Trainer(_cfg(_numeric_group_csv(tmp_path), input_noise=0.3, adversarial=adversarial))
    ds, col = trainer.dataset, _g_column(trainer.dataset)
    allowed = _encoded_groups(ds)
    assert len(allowed) == 2
    seen: list[torch.Tensor] = []
    trainer.model.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, col].cpu()))
    row = trainer.run_epoch()
    assert "robust_acc" in row
    assert seen
    assert set(torch.cat(seen).tolist()) <= allowed


def test_the_fused_cohort_never_moves_the_group_either(tmp_path: Path) -> None:
    path = _numeric_group_csv(tmp_path)
    # Fused members train with input noise (adversarial training runs alone) and
    # measure robust accuracy with the cohort's own batched PGD.
    configs = {"noise": _cfg(path, input_noise=0.3), "more": _cfg(path, input_noise=1.0)}
    cohort = FusedCohort(configs, device="cpu")
    col = _g_column(cohort.dataset)
    allowed = _encoded_groups(cohort.dataset)
    assert not bool(cohort._mask[col])
    seen: list[torch.Tensor] = []
    forward = cohort._forward

    def recording(layers: Any, x: torch.Tensor, masks: Any) -> torch.Tensor:
        seen.append(x[..., col].detach().cpu().reshape(-1))
        return forward(layers, x, masks)

    cohort._forward = recording  # type: ignore[method-assign]
    assert cohort.run_epoch()
    assert seen
    assert set(torch.cat(seen).tolist()) <= allowed


def test_a_group_as_the_only_numeric_feature_is_refused_saying_so(tmp_path: Path) -> None:
    path = _numeric_group_csv(tmp_path, only_group=True)
    with pytest.raises(SpecError) as info:
        Trainer(_cfg(path, input_noise=0.3))
    assert (
        f"the file {path} has no numeric feature to perturb (input noise and attacks move "
        "only numeric features, and the only numeric feature here is the sensitive "
        "attribute 'g', which is never perturbed)"
    ) in str(info.value)


@pytest.mark.parametrize("name", ["adult", "german", "compas"])
def test_builtin_masks_are_unchanged(name: str, data_cache: Path) -> None:
    ds = load_dataset(name, cache_dir=data_cache)
    schema = ds.schema
    assert schema.sensitive is not None
    assert schema.sensitive not in {f.name for f in schema.numeric}  # a text column
    before = torch.zeros(schema.n_features, dtype=torch.bool)
    before[: len(schema.numeric)] = True  # the rule before the sensitive column was left out
    assert torch.equal(ds.perturb_mask, before)
