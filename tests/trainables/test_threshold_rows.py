"""Post-processing thresholds fitted on the training and validation rows
(``penalties.fairness.threshold_rows: train+val``), the same rows in a
registry refit, and the refusal of an unknown choice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from regtune.errors import SpecError
from regtune.platform.registry.postfit import fit_postprocessing, settings_of
from regtune.trainables.checkpoint import load_tree
from regtune.trainables.data import Dataset
from regtune.trainables.fairness import eo_difference
from regtune.trainables.loop import Trainer, train
from regtune.trainables.thresholds import apply_thresholds, fit_thresholds

CONFIG = {
    "dataset": "adult",
    "model": {"arch": "logreg"},
    "training": {"epochs": 1, "batch_size": 2048, "lr": 1e-2, "robust_every": 0},
    "penalties": {
        "fairness": {
            "kind": "eo",
            "method": "postprocess",
            "bound": 0.02,
            "threshold_rows": "train+val",
        }
    },
}


def test_train_and_val_rows_fit_the_stored_thresholds(adult: Dataset, tmp_path: Path) -> None:
    result = train(CONFIG, dataset=adult, checkpoint_dir=tmp_path / "ckpt")
    out = result.test_metrics
    n_train, n_val = adult.train.y.shape[0], adult.val.y.shape[0]
    assert out["postprocess_fit_rows"] == n_train + n_val
    # The same fit, by hand, on the kept model's scores of both splits.
    assert adult.train.s is not None and adult.val.s is not None and adult.test.s is not None
    with torch.no_grad():
        scores = torch.cat([result.model(adult.train.x), result.model(adult.val.x)])
    fit = fit_thresholds(
        scores.softmax(dim=1)[:, 1],
        torch.cat([adult.train.y, adult.val.y]),
        torch.cat([adult.train.s, adult.val.s]),
        2,
        kind="eo",
        tolerance=0.02,
    )
    stored = load_tree(tmp_path / "ckpt")["thresholds"]
    assert stored.tolist() == list(fit.thresholds)
    assert out["val_postprocess_gap"] == fit.gap <= 0.02 and out["postprocess_feasible"] == 1.0
    # The test decisions are those thresholds applied, as a server would.
    with torch.no_grad():
        p = result.model(adult.test.x).softmax(dim=1)[:, 1]
    pred = apply_thresholds(p, adult.test.s, stored)
    assert out["test_eo_diff"] == eo_difference(adult.test.y, pred, adult.test.s)
    assert out["postprocess_fit_rows"] > n_val  # the default fits on validation only

    # A registry refit of this network (an ensemble's path) fits on the same rows.
    settings = settings_of(CONFIG)
    assert settings is not None and settings["constraint"]["rows"] == "train+val"
    post = fit_postprocessing(result.model, adult, settings)
    assert post is not None and post.thresholds == fit.thresholds
    assert post.record["thresholds_fitted_on"] == "train+val"


def test_an_unknown_choice_of_rows_is_refused_by_name(adult: Dataset) -> None:
    with pytest.raises(
        SpecError, match=r"threshold_rows must be one of \('val', 'train\+val'\); got 'test'"
    ):
        Trainer(CONFIG, dataset=adult, threshold_rows="test")
    # The argument overrides the config's choice; the config's is the default.
    assert Trainer(CONFIG, dataset=adult, threshold_rows="val").threshold_rows == "val"
    assert Trainer(CONFIG, dataset=adult).threshold_rows == "train+val"
