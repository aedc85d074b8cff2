"""Regenerate ``unstable_histories.json``: real training histories the "unstable" rule is
tested on (``.venv/bin/python tests/platform/analysis/data/make_unstable_histories.py``,
about 4 CPU-minutes on one thread).

Three kinds, each run an MLP trained by :class:`regtune.trainables.loop.Trainer` on a
digits or adult subset (constant learning rate, no warm-up):

- ``unstable``: a learning rate 300-10,000x the default (AdamW 0.3-3, SGD 3-10): the
  loss blows up (NaN, or a first epoch averaging 13x to 10^7x its end) and at best
  settles at chance level;
- ``healthy``: the default-ish rates (AdamW 1e-3, 3e-3, and 1e-2 on tiny subsets) on
  validation splits of 60-400 rows, many of them overfitting (small training subsets,
  wide layers, no regularization);
- ``high-lr``: rates 10-1000x the default (AdamW 0.01-0.1, SGD 0.3-1): noisy runs the
  tests leave unasserted; the rule's labels for them are reported, not required.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from regtune.trainables.data import Dataset, Split, load_dataset
from regtune.trainables.loop import Trainer

OUT = Path(__file__).with_name("unstable_histories.json")
MLP = {"arch": "mlp", "width": 128, "depth": 2}


def _subset(ds: Dataset, n_train: int | None, n_val: int | None, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)

    def cut(split: Split, n: int | None) -> Split:
        if n is None or n >= len(split.y):
            return split
        idx = torch.randperm(len(split.y), generator=g)[:n]
        return Split(split.x[idx], split.y[idx], None if split.s is None else split.s[idx])

    return dataclasses.replace(ds, train=cut(ds.train, n_train), val=cut(ds.val, n_val))


def _run(
    data: dict[str, Dataset],
    name: str,
    kind: str,
    dataset: str,
    training: dict[str, Any],
    model: dict[str, Any],
    n_train: int | None = None,
    n_val: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    ds = _subset(data[dataset], n_train, n_val, seed)
    config = {
        "dataset": dataset,
        "model": model,
        "training": {"seed": seed, "device": "cpu", "robust_every": 0, **training},
    }
    trainer = Trainer(config, dataset=ds, device="cpu")
    train: list[float | None] = []
    val: list[float | None] = []
    while not trainer.should_stop:
        row = trainer.run_epoch()
        for out, key in ((train, "train_loss"), (val, "val_loss")):
            v = float(row[key])
            out.append(float(f"{v:.4g}") if math.isfinite(v) else None)
    print(name, kind, len(ds.val.y), flush=True)
    return {
        "trial_id": name,
        "kind": kind,
        "dataset": dataset,
        "n_train": len(ds.train.y),
        "n_val": len(ds.val.y),
        "optimizer": training["optimizer"],
        "lr": training["lr"],
        "train_loss": train,
        "val_loss": val,
    }


def main() -> None:
    """Train every run and write the fixture."""
    torch.set_num_threads(1)
    data = {"digits": load_dataset("digits"), "adult": load_dataset("adult")}
    runs = []
    subsets = [("digits", None, None), ("adult", 4000, 300)]
    for kind, rates in (
        ("unstable", [("adamw", 0.3), ("adamw", 1.0), ("adamw", 3.0), ("sgd", 3.0), ("sgd", 10.0)]),
        ("high-lr", [("adamw", 0.1), ("adamw", 0.03), ("sgd", 1.0), ("sgd", 0.3)]),
    ):
        for opt, lr in rates:
            for dataset, n_train, n_val in subsets:
                training = {"epochs": 15, "lr": lr, "optimizer": opt, "batch_size": 64}
                name = f"{dataset}-{opt}-lr{lr:g}"
                runs.append(_run(data, name, kind, dataset, training, MLP, n_train, n_val))
    healthy = [
        ("digits", None, None, 1e-3, 0, 256),
        ("digits", None, None, 3e-3, 1, 256),
        ("digits", None, None, 1e-2, 2, 256),  # oscillates: its train loss spikes (high-lr)
        ("digits", None, 100, 3e-3, 3, 256),
        ("digits", 300, 270, 3e-3, 4, 256),
        ("digits", 150, 100, 1e-2, 5, 256),
        ("adult", 4000, 300, 1e-3, 0, 256),
        ("adult", 4000, 270, 3e-3, 1, 256),
        ("adult", 1000, 150, 1e-2, 2, 256),
        ("adult", 600, 270, 3e-3, 3, 256),
        ("digits", None, 60, 1e-3, 6, 64),
        ("digits", 600, 200, 1e-3, 7, 512),
        ("digits", None, None, 3e-3, 8, 128),
        ("adult", 2000, 100, 1e-3, 4, 64),
        ("adult", 8000, 400, 3e-3, 5, 512),
        ("adult", 3000, 270, 1e-3, 6, 128),
    ]
    for dataset, n_train, n_val, lr, seed, width in healthy:
        kind = "high-lr" if (dataset, n_train, lr) == ("digits", None, 1e-2) else "healthy"
        training = {
            "epochs": 25 if dataset == "digits" else 20,
            "lr": lr,
            "optimizer": "adamw",
            "batch_size": 32,
        }
        name = f"{dataset}-tr{n_train or 'all'}-val{n_val or 'all'}-lr{lr:g}-w{width}-s{seed}"
        model = {"arch": "mlp", "width": width, "depth": 2}
        runs.append(_run(data, name, kind, dataset, training, model, n_train, n_val, seed))
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    out.write_text("[\n" + ",\n".join(json.dumps(r, separators=(",", ":")) for r in runs) + "\n]\n")


if __name__ == "__main__":
    main()
