"""A meta.json that a reader would trip on later is refused on load, naming the field.

Each case edits a real version's meta.json and recomputes its content hash (as
someone re-writing the file would), so only the field check can refuse it. The
torch-free check (``read_checked``, what ``regtune serve --write-config`` runs)
refuses each with the same words as ``load_version``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from regtune.errors import CheckpointError
from regtune.platform.registry import Member, ModelVersion, load_version, save_version
from regtune.platform.registry.integrity import DIGEST_KEY, meta_digest
from regtune.platform.registry.meta_checks import read_checked
from regtune.platform.registry.store import place_of
from regtune.trainables.loop import RunResult

Change = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def saved(tiny_run: RunResult, tmp_path_factory: pytest.TempPathFactory) -> ModelVersion:
    """``tiny:1`` written once for the module (each case edits a copy of it)."""
    member = Member.from_model(tiny_run.config, tiny_run.model, trial_id="t0")
    root = str(tmp_path_factory.mktemp("registry"))
    return save_version("tiny", [member], tiny_run.dataset, root=root)


def _rewrite(version: ModelVersion, target: Path, change: Change) -> Path:
    shutil.copytree(version.path, target)
    meta = json.loads((target / "meta.json").read_text())
    change(meta)
    meta[DIGEST_KEY] = meta_digest(meta)
    (target / "meta.json").write_text(json.dumps(meta))
    return target


def _set(path: str, value: Any) -> Change:
    """Set the dotted ``path`` of meta.json to ``value``."""

    def change(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def _drop(key: str) -> Change:
    def change(meta: dict[str, Any]) -> None:
        del meta[key]

    return change


def _quantiles(edit: Callable[[list[float]], list[Any]]) -> Change:
    def change(meta: dict[str, Any]) -> None:
        feature = meta["reference"]["features"]["pixel_3_3"]
        feature["quantiles"] = edit(feature["quantiles"])

    return change


QUANTILES = "a list of 101 finite, non-decreasing numbers"
CASES: list[tuple[str, Change, str, str]] = [
    ("two classes", _set("classes", ["0", "1"]), "classes", "a list of 10 distinct labels"),
    ("repeated class", _set("classes", ["0"] * 10), "classes", "a list of 10 distinct labels"),
    ("classes null", _set("classes", None), "classes", "a list of 10 distinct labels"),
    ("version text", _set("version", "x"), "version", "an integer >= 1"),
    ("version 0", _set("version", 0), "version", "an integer >= 1"),
    ("version true", _set("version", True), "version", "an integer >= 1"),
    ("no name", _drop("name"), "name", "1-64 letters, digits"),
    ("path as name", _set("name", "../../etc"), "name", "1-64 letters, digits"),
    ("odd kind", _set("kind", "committee"), "kind", "single, ensemble, student"),
    ("metric text", _set("metrics.test_acc", "high"), "metrics.test_acc", "numbers (null"),
    ("no fingerprint", _set("dataset.fingerprint", None), "dataset.fingerprint", "sha256"),
    ("n_classes", _set("architecture.n_classes", "10"), "architecture.n_classes", ">= 2"),
    ("features list", _set("reference.features", []), "reference.features", "an object"),
    ("no reference", _set("reference", None), "reference", "an object with n, features"),
    (
        "decreasing quantiles",
        _quantiles(lambda q: [q[-1] + 1.0, *q[1:]]),
        "reference.features.pixel_3_3.quantiles",
        QUANTILES,
    ),
    (
        "five quantiles",
        _quantiles(lambda q: q[:5]),
        "reference.features.pixel_3_3.quantiles",
        QUANTILES,
    ),
    (
        "null quantile",
        _quantiles(lambda q: [None, *q[1:]]),
        "reference.features.pixel_3_3.quantiles",
        QUANTILES,
    ),
    (
        "unknown feature kind",
        _set("reference.features.pixel_3_3.kind", "ordinal"),
        "reference.features.pixel_3_3.kind",
        "'numeric' or 'categorical'",
    ),
    (
        "categorical list",
        _set("reference.features.colour", {"kind": "categorical", "frequencies": [0.5, 0.5]}),
        "reference.features.colour.frequencies",
        "an object of categories to shares in [0, 1]",
    ),
    (
        "categorical share",
        _set("reference.features.colour", {"kind": "categorical", "frequencies": {"red": 2}}),
        "reference.features.colour.frequencies",
        "shares in [0, 1]",
    ),
    (
        "mean text",
        _set("reference.features.pixel_3_3.mean", "x"),
        "reference.features.pixel_3_3.mean",
        "a finite number",
    ),
    (
        "prediction share",
        _set("reference.prediction", {"0": -1}),
        "reference.prediction",
        "shares in [0, 1]",
    ),
    (
        "source",
        _set("reference.numeric_source", "guessed"),
        "reference.numeric_source",
        "'raw' or 'encoded'",
    ),
]


@pytest.mark.parametrize(
    ("change", "field", "allowed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_malformed_field_is_refused_naming_it(
    saved: ModelVersion, tmp_path: Path, change: Change, field: str, allowed: str
) -> None:
    path = _rewrite(saved, tmp_path / "copy", change)
    with pytest.raises(CheckpointError) as info:
        load_version(str(path))
    message = str(info.value)
    assert f"meta.json field '{field}' is " in message and allowed in message, message
    assert str(path) in message
    with pytest.raises(CheckpointError) as checked:
        read_checked(place_of(str(path)), None, None)
    assert str(checked.value) == message


def test_the_version_must_match_its_folder(saved: ModelVersion, tmp_path: Path) -> None:
    path = _rewrite(saved, tmp_path / "registry" / "tiny" / "v7", lambda meta: None)
    words = r"field 'version' is 1; allowed: 7, the number of its folder v7"
    with pytest.raises(CheckpointError, match=words):
        load_version(str(path))
    with pytest.raises(CheckpointError, match=words):
        read_checked(place_of(str(path)), None, None)


def test_an_unchanged_copy_loads(saved: ModelVersion, tmp_path: Path) -> None:
    path = _rewrite(saved, tmp_path / "copy", lambda meta: None)
    assert load_version(str(path)).classes == saved.classes
    meta, files = read_checked(place_of(str(path)), "tiny", 1)
    assert meta["classes"] == saved.classes and set(files) == {"weights.safetensors"}


@pytest.mark.parametrize("scale", [0.0, -1.0, "Infinity", "NaN"])
def test_a_schema_scale_no_value_can_be_divided_by_is_refused_at_load(
    saved: ModelVersion, tmp_path: Path, scale: float | str
) -> None:
    """Such a version used to load and then refuse every request with a range of one point."""
    name = saved.schema.numeric[0].name

    def change(meta: dict[str, Any]) -> None:
        meta["schema"]["numeric"][0][2] = scale

    # JSON has no infinity or NaN (the digest refuses them): float() reads these strings so.
    path = _rewrite(saved, tmp_path / "copy", change)
    with pytest.raises(CheckpointError) as info:
        load_version(str(path))
    message = str(info.value)
    assert f"numeric[0] {name!r} has scale" in message and "finite number above 0" in message
    assert str(path) in message
