"""What does a typical request to a model look like? One record built from its reference.

Used for the smoke request of ``regtune serve --once`` and as an example a
user can edit: every numeric feature at its training median, every
categorical one at its most frequent training category.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regtune.trainables.schema import FeatureSchema

__all__ = ["typical_record"]

#: Decimal places kept of a median (float32 round-off is noise beyond these).
DIGITS = 4


def typical_record(schema: FeatureSchema, reference: Mapping[str, Any]) -> dict[str, Any]:
    """A raw record of training medians and modes, in the schema's input order."""
    features = reference.get("features", {})
    record: dict[str, Any] = {}
    for num in schema.numeric:
        quantiles = features.get(num.name, {}).get("quantiles")
        value = quantiles[len(quantiles) // 2] if quantiles else num.center
        record[num.name] = round(float(value), DIGITS)
    for cat in schema.categorical:
        shares = features.get(cat.name, {}).get("frequencies") or {}
        record[cat.name] = max(shares, key=shares.__getitem__) if shares else cat.vocabulary[0]
    return record
