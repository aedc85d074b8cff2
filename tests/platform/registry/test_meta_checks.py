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
from regtune.trainables.config import TrainConfig, parse_train_config
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


def _key(node: Any, key: str) -> Any:
    """``key`` as ``node`` indexes it: a list's position, a dict's key."""
    return int(key) if isinstance(node, list) else key


def _set(path: str, value: Any) -> Change:
    """Set the dotted ``path`` of meta.json to ``value`` (a number indexes a list)."""

    def change(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = meta
        for key in parents:
            node = node[_key(node, key)]
        node[_key(node, last)] = value

    return change


def _drop(path: str) -> Change:
    """Remove the dotted ``path`` of meta.json."""

    def change(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = meta
        for key in parents:
            node = node[_key(node, key)]
        del node[_key(node, last)]

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
# Fields loading read without a check: a string quantization crashed with an
# AttributeError, a missing schema was "file meta.json cannot be read ('schema')",
# a malformed configs crashed distill, a malformed input_shape was accepted.
QUANTIZATION = "null (not quantized) or an object {scheme, layers"
SCHEMA = "an object {version, numeric, categorical, label, classes, sensitive"
READ_LATER: list[tuple[str, Change, str, str]] = [
    ("quantization text", _set("quantization", "int8"), "quantization", QUANTIZATION),
    ("quantization list", _set("quantization", []), "quantization", QUANTIZATION),
    (
        "quantization without layers",
        _set("quantization", {"scheme": "int8-dynamic"}),
        "quantization.layers",
        "a list of the quantized layers' names",
    ),
    (
        "quantization scheme",
        _set("quantization", {"scheme": "int4", "layers": []}),
        "quantization.scheme",
        "'int8-dynamic'",
    ),
    (
        "quantization accuracy text",
        _set("quantization", {"scheme": "int8-dynamic", "layers": [], "int8_test_acc": "x"}),
        "quantization.int8_test_acc",
        "a number (null: no finite value)",
    ),
    ("no schema", _drop("schema"), "schema", SCHEMA),
    ("schema text", _set("schema", "x"), "schema", SCHEMA),
    ("schema version", _set("schema.version", 9), "schema.version", "1 or 2"),
    ("schema numeric text", _set("schema.numeric", "x"), "schema.numeric", "a list of [name"),
    (
        "schema numeric entry",
        _set("schema.numeric.0", ["pixel_0_0", 0.0]),
        "schema.numeric.0",
        "[name, center, scale]",
    ),
    (
        "schema no groups",
        _drop("schema.sensitive_values"),
        "schema.sensitive_values",
        "a list of the sensitive groups' names",
    ),
    ("schema label", _set("schema.label", 3), "schema.label", "the label column's name"),
    (
        "schema vocabulary",
        _set("schema.categorical", [["colour", "red"]]),
        "schema.categorical.0",
        "[name, vocabulary]",
    ),
    (
        "input_shape text",
        _set("input_shape", "x"),
        "input_shape",
        "the same as architecture.input_shape",
    ),
    (
        "input_shape other",
        _set("input_shape", [7]),
        "input_shape",
        "the same as architecture.input_shape",
    ),
    (
        "architecture input_shape text",
        _set("architecture.input_shape", "x"),
        "architecture.input_shape",
        "a non-empty list of whole numbers >= 1",
    ),
    (
        "architecture input_shape zero",
        _set("architecture.input_shape", [0]),
        "architecture.input_shape",
        "a non-empty list of whole numbers >= 1",
    ),
    ("configs text", _set("configs", "x"), "configs", "a list of 1 training config(s)"),
    ("no configs", _drop("configs"), "configs", "a list of 1 training config(s)"),
    ("two configs", lambda m: m["configs"].append(m["configs"][0]), "configs", "a list of 1"),
    ("config text", _set("configs.0", "x"), "configs.0", "a training config (an object)"),
    (
        "config without training",
        _drop("configs.0.training"),
        "configs.0",
        "with the sections dataset, model, training, penalties (objects; not: training)",
    ),
    (
        "config invalid",
        _set("configs.0.model.depth", "deep"),
        "configs.0",
        "a training config (model.depth",
    ),
]
# The architecture's own fields, which loading blamed on the weights file.
ARCHITECTURE: list[tuple[str, Change, str, str]] = [
    (
        "no spectral_norm",
        _drop("architecture.members.0.spectral_norm"),
        "architecture.members.0.spectral_norm",
        "true or false",
    ),
    (
        "spectral_norm text",
        _set("architecture.members.0.spectral_norm", "yes"),
        "architecture.members.0.spectral_norm",
        "true or false",
    ),
]
CASES += READ_LATER + ARCHITECTURE


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


@pytest.mark.parametrize(
    ("change", "field", "shown", "allowed"),
    [
        (_set("version", "1"), "version", "'1'", "1, the number of its folder v1"),
        (_set("version", 1.0), "version", "1.0", "1, the number of its folder v1"),
        (_set("name", "other"), "name", "'other'", "'tiny', the name of the model folder"),
        (_drop("name"), "name", "missing", "'tiny', the name of the model folder"),
    ],
)
def test_a_version_recording_another_name_or_number_names_the_field(
    saved: ModelVersion, tmp_path: Path, change: Change, field: str, shown: str, allowed: str
) -> None:
    """It used to say "is not a regtune-model v1 file (it records tiny:1)" for a "1"."""
    path = _rewrite(saved, tmp_path / "registry" / "tiny" / "v1", change)
    expected = f"model version {path}: meta.json field '{field}' is {shown}; allowed: {allowed}"
    with pytest.raises(CheckpointError) as info:
        load_version("tiny:1", root=str(tmp_path / "registry"))
    assert str(info.value).startswith(expected), str(info.value)
    with pytest.raises(CheckpointError) as checked:
        read_checked(place_of(str(path)), "tiny", 1)
    assert str(checked.value) == str(info.value)


def test_weights_that_do_not_fit_are_still_blamed_on_the_weights(
    saved: ModelVersion, tmp_path: Path
) -> None:
    """A well-formed architecture the tensors do not fit names the weights file."""
    path = _rewrite(saved, tmp_path / "copy", _set("architecture.members.0.model.width", 64))
    with pytest.raises(CheckpointError, match=r"file weights\.safetensors does not fit"):
        load_version(str(path))


def test_a_folder_in_place_of_a_listed_file_is_refused_naming_it(
    saved: ModelVersion, tmp_path: Path
) -> None:
    """A read error other than "not found" was an OSError traceback."""
    path = _rewrite(saved, tmp_path / "copy", lambda meta: None)
    (path / "weights.safetensors").unlink()
    (path / "weights.safetensors").mkdir()
    with pytest.raises(CheckpointError) as info:
        load_version(str(path))
    message = str(info.value)
    assert message.startswith(f"model version {path}: file weights.safetensors cannot be read (")
    assert "is a directory" in message
    with pytest.raises(CheckpointError) as checked:
        read_checked(place_of(str(path)), None, None)
    assert str(checked.value) == message


def test_an_unchanged_copy_loads(saved: ModelVersion, tmp_path: Path) -> None:
    path = _rewrite(saved, tmp_path / "copy", lambda meta: None)
    loaded = load_version(str(path))
    assert loaded.classes == saved.classes
    meta, files, configs = read_checked(place_of(str(path)), "tiny", 1)
    assert meta["classes"] == saved.classes and set(files) == {"weights.safetensors"}
    # The members' configs, parsed once by the check: what quantize reads its data from.
    assert configs == loaded.configs == [parse_train_config(meta["configs"][0], stored=True)]
    assert isinstance(loaded.configs[0], TrainConfig)


@pytest.mark.parametrize(
    "scale", [0.0, -1.0, "Infinity", "NaN", pytest.param(10**400, id="10**400")]
)
def test_a_schema_scale_no_value_can_be_divided_by_is_refused_at_load(
    saved: ModelVersion, tmp_path: Path, scale: float | str
) -> None:
    """Such a version used to load and then refuse every request with a range of one point.
    An integer too large for a float was an OverflowError traceback."""
    name = saved.schema.numeric[0].name

    def change(meta: dict[str, Any]) -> None:
        meta["schema"]["numeric"][0][2] = scale

    # JSON has no infinity or NaN (the digest refuses them): these strings stand for them.
    path = _rewrite(saved, tmp_path / "copy", change)
    with pytest.raises(CheckpointError) as info:
        load_version(str(path))
    message = str(info.value)
    assert message.startswith(f"model version {path}: meta.json field 'schema.numeric.0' is ")
    assert repr(name) in message and "a finite number above 0" in message
    # Refused without torch too (`models show`, `serve --write-config`).
    with pytest.raises(CheckpointError) as checked:
        read_checked(place_of(str(path)), None, None)
    assert str(checked.value) == message


def test_the_checked_quantization_scheme_is_the_one_quantize_writes() -> None:
    """meta_checks imports no torch, so it keeps its own copy of quantize.SCHEME."""
    from regtune.platform.registry.meta_checks import QUANT_SCHEMES
    from regtune.platform.registry.quantize import SCHEME

    assert QUANT_SCHEMES == (SCHEME,)
