"""The results callback on its own: what it leaves out of a row, and that it travels pickled.

The store inside real sweeps (a killed worker; a killed driver resumed on
S3: one row per epoch, none lost or repeated) is checked by the fault tests
in tests/platform/tune/test_faults.py, which run those sweeps once for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray.cloudpickle as cloudpickle

from regtune.platform.results.callback import ResultsCallback, results_callbacks
from regtune.platform.results.schema import NOT_METRICS
from regtune.search_spaces import load_spec

MAX_EPOCHS = 4
SPEC: dict[str, Any] = {
    "name": "store-sweep",
    "dataset": "digits",
    "model": {"arch": "mlp", "width": 16, "depth": 1},
    "training": {"batch_size": 256, "lr": 0.01, "robust_every": 0},
    "penalties": {"l2": {"grid": [0.0, 1e-4]}},
    "objectives": [{"metric": "val_acc", "mode": "max"}],
    "scheduler": {"kind": "none"},
    "searcher": {"kind": "grid", "max_concurrent": 1},
    "resources": {"cpu": 1},
    "budget": {"samples": 1, "max_epochs": MAX_EPOCHS},
    "checkpoint": {"every": 2},
}


def test_not_metrics_covers_every_key_tune_adds() -> None:
    from ray.tune.result import AUTO_RESULT_KEYS

    assert set(AUTO_RESULT_KEYS) <= NOT_METRICS


def test_callback_survives_pickling_without_its_writer(tmp_path: Path) -> None:
    spec = load_spec(SPEC)
    (callback,) = results_callbacks(spec, str(tmp_path / "exp"))
    assert isinstance(callback, ResultsCallback)
    callback.setup()
    assert (tmp_path / "exp" / "results" / "spec.json").exists()
    copy = cloudpickle.loads(cloudpickle.dumps(callback))
    assert copy._writer is None and copy.exp_path == callback.exp_path
    assert copy.writer.max_t == MAX_EPOCHS
