"""Seeds are replicates, not strengths: a sweep of the built-in ``l2-path`` preset (a grid over
``penalties.l2``, two ``training.seed`` values each) gets a path of penalties.l2 whose medians
are over both seeds, and no path, heat-map axis or range advice on the seed."""

from __future__ import annotations

import pandas as pd
import pytest

from regtune.platform.analysis.run import analyze_tables
from regtune.platform.analysis.swept import is_replicate, swept_parameters
from regtune.search_spaces import load_spec
from tests.platform.analysis.tables import HEALTHY, UNDERFIT, epochs_table

L2 = [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]


def _epochs() -> pd.DataFrame:
    """Both seeds of every l2 strength; seed 1 scores better, so it would be "best"."""
    curves, configs = {}, {}
    for i, l2 in enumerate(L2):
        for seed in (0, 1):
            trial = f"t{i}s{seed}"
            curves[trial] = HEALTHY if seed == 1 else UNDERFIT
            configs[trial] = {"penalties.l2": l2, "training.seed": seed}
    return epochs_table(curves, configs)


def test_seed_keys_are_replicates() -> None:
    assert is_replicate("training.seed") and is_replicate("dataset.split_seed")
    assert not is_replicate("penalties.l2") and not is_replicate("training.lr")


@pytest.mark.parametrize("with_spec", [True, False])
def test_a_seed_gets_no_path_no_heat_map_axis_and_no_advice(with_spec: bool) -> None:
    spec = load_spec("l2-path") if with_spec else None
    analysis = analyze_tables(_epochs(), spec=spec)
    # Still listed as swept (it was), but as a replicate.
    seed = next(p for p in analysis.swept if p.name == "training.seed")
    assert seed.replicate
    assert list(analysis.paths) == ["penalties.l2"]
    assert analysis.heatmap is None
    assert list(analysis.edges["parameter"]) == ["penalties.l2"]
    assert not any("training.seed" in line for line in analysis.verdict)
    # The path's medians are over both seeds: each point holds both replicates.
    path = analysis.paths["penalties.l2"]
    acc = path[path["metric"] == "val_acc"]
    assert list(acc["n_trials"]) == [2] * len(L2)


def test_a_seed_named_as_a_penalty_gets_a_path_but_no_range_advice() -> None:
    analysis = analyze_tables(
        _epochs(), spec=load_spec("l2-path"), penalties=["training.seed", "penalties.l2"]
    )
    assert set(analysis.paths) == {"training.seed", "penalties.l2"}
    assert "training.seed" not in set(analysis.edges["parameter"])
    assert not any("training.seed" in line for line in analysis.verdict)


def test_swept_parameters_keep_the_seed_for_the_header() -> None:
    table = _epochs().groupby("trial_id").last()
    names = [p.name for p in swept_parameters(table)]
    assert names == ["penalties.l2", "training.seed"]


def test_the_terminal_header_marks_a_seed_as_replicates() -> None:
    from regtune.platform.cli.analyze import _swept_name

    analysis = analyze_tables(_epochs(), spec=load_spec("l2-path"))
    names = [_swept_name(p) for p in analysis.swept]
    assert "training.seed (replicates)" in names and "penalties.l2" in names
