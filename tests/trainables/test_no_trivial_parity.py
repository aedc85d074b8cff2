"""A version's stored thresholds that decide the same for everyone are not
reported as feasible post-processing (the rule of ``fit_thresholds``)."""

from __future__ import annotations

import torch
from torch import nn

from regtune.platform.registry.postfit import fit_postprocessing
from regtune.trainables.data import Dataset
from regtune.trainables.thresholds import fit_thresholds

SETTINGS = {"calibration": "none", "constraint": {"kind": "eo", "tolerance": 0.02}}


def _model(adult: Dataset) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(adult.train.x.shape[1], 2)


def test_thresholds_that_select_no_one_are_not_feasible(adult: Dataset) -> None:
    # Above every probability: no one selected, so eo_diff is 0 on validation.
    post = fit_postprocessing(_model(adult), adult, SETTINGS, stored_thresholds=(1.5, 1.5))
    assert post is not None
    fit = post.record["fit"]
    assert fit["val_postprocess_gap"] == 0.0
    assert fit["val_postprocess_acc"] == float((adult.val.y == 0).double().mean())
    assert fit["postprocess_feasible"] is False


def test_a_refit_reports_what_fit_thresholds_says(adult: Dataset) -> None:
    model = _model(adult)
    post = fit_postprocessing(model, adult, SETTINGS)
    assert post is not None and post.thresholds is not None and adult.val.s is not None
    with torch.no_grad():
        scores = model(adult.val.x).softmax(dim=1)[:, 1]
    direct = fit_thresholds(scores, adult.val.y, adult.val.s, 2, kind="eo", tolerance=0.02)
    assert post.thresholds == direct.thresholds
    fit = post.record["fit"]
    assert fit["postprocess_feasible"] is direct.feasible
    assert fit["val_postprocess_acc"] == direct.accuracy
