"""``regtune models show / list / quantize`` on a meta.json whose fields have the wrong
types (its content hash recomputed, as someone re-writing the file would).

``show`` and ``quantize`` refuse such a version with one line in the words of
:mod:`regtune.platform.registry.meta_checks` (what ``regtune serve
--write-config`` and ``load_version`` say), exit 2, no traceback; ``list``
lists every other model, marks the damaged one and prints its error, exit 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from regtune.errors import CheckpointError
from regtune.platform.cli import app
from regtune.platform.registry import Member, ModelVersion, load_version, save_version
from regtune.trainables.loop import RunResult
from tests.platform.registry.test_meta_checks import Change, _drop, _rewrite, _set

runner = CliRunner()


@pytest.fixture(scope="module")
def saved(tiny_run: RunResult, tmp_path_factory: pytest.TempPathFactory) -> ModelVersion:
    """``tiny:1`` written once for the module (each case edits a copy of it)."""
    member = Member.from_model(tiny_run.config, tiny_run.model, trial_id="t0")
    root = str(tmp_path_factory.mktemp("registry"))
    return save_version("tiny", [member], tiny_run.dataset, root=root)


def _copy(saved: ModelVersion, storage: Path, name: str, change: Change | None = None) -> Path:
    """``saved`` as ``<storage>/registry/<name>/v1``, its meta.json edited by ``change``
    and re-hashed."""
    target = storage / "registry" / name / "v1"
    target.parent.mkdir(parents=True, exist_ok=True)

    def renamed(meta: dict[str, Any]) -> None:
        meta["name"] = name
        if change is not None:
            change(meta)

    return _rewrite(saved, target, renamed)


def _one_error_line(result: Any) -> str:
    """The refusal: exit 2, no traceback, one ``error:`` line on stderr."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


BAD_FIELD = "meta.json field '{field}' is {value}; allowed: "

# Fields meta_checks refuses for every reader (load_version's words).
CHECKED: list[tuple[str, Change, str]] = [
    ("dataset a list", _set("dataset", []), "dataset"),
    ("kind a number", _set("kind", 5), "kind"),
    ("test_acc text", _set("metrics.test_acc", "high"), "metrics.test_acc"),
    ("classes text", _set("classes", "0123456789"), "classes"),
    ("postprocessing a number", _set("postprocessing", 3), "postprocessing"),
    ("version text", _set("version", "one"), "version"),
    ("version of another folder", _set("version", 2), "version"),
    ("name of another model", _set("name", "other"), "name"),
    # Read by loading, quantizing and distilling, and checked only there (or not).
    ("quantization text", _set("quantization", "int8"), "quantization"),
    ("no schema", _drop("schema"), "schema"),
    ("schema text", _set("schema", "x"), "schema"),
    ("configs text", _set("configs", "x"), "configs"),
    ("input_shape text", _set("input_shape", "x"), "input_shape"),
    (
        "spectral_norm text",
        _set("architecture.members.0.spectral_norm", "yes"),
        "architecture.members.0.spectral_norm",
    ),
]
# Fields `models show` reads and loading used to leave to building the module:
# meta_checks refuses them for every reader too (load_version, --write-config, quantize).
SHOWN: list[tuple[str, Change, str, Any]] = [
    ("members a number", _set("architecture.members", 7), "architecture.members", 7),
    ("lineage text", _set("lineage", "x"), "lineage", "'x'"),
    ("member not an object", _set("architecture.members", [3]), "architecture.members", "[3]"),
    (
        "member arch unknown",
        _set("architecture.members", [{"model": {"arch": "rnn"}, "spectral_norm": False}]),
        "architecture.members.0.model",
        "{'arch': 'rnn'}",
    ),
]


EVERY_READER = CHECKED + [(name, change, field) for name, change, field, _ in SHOWN]


@pytest.mark.parametrize(
    ("change", "field"), [c[1:] for c in EVERY_READER], ids=[c[0] for c in EVERY_READER]
)
def test_show_refuses_a_field_meta_checks_refuses_in_its_words(
    saved: ModelVersion, tmp_path: Path, change: Change, field: str
) -> None:
    _copy(saved, tmp_path, "tiny", change)
    with pytest.raises(CheckpointError) as refused:
        load_version("tiny", root=str(tmp_path / "registry"))
    for command in (["models", "show", "tiny"], ["models", "show", "tiny", "--json"]):
        result = runner.invoke(app, [*command, "--storage", str(tmp_path)])
        assert _one_error_line(result) == str(refused.value)
    assert f"meta.json field '{field}' is " in str(refused.value)


@pytest.mark.parametrize(
    ("change", "field", "shown"), [c[1:] for c in SHOWN], ids=[c[0] for c in SHOWN]
)
def test_show_refuses_a_field_it_reads_naming_it(
    saved: ModelVersion, tmp_path: Path, change: Change, field: str, shown: Any
) -> None:
    folder = _copy(saved, tmp_path, "tiny", change)
    result = runner.invoke(app, ["models", "show", "tiny", "--storage", str(tmp_path)])
    line = _one_error_line(result)
    assert line.startswith(f"model version {folder}: " + BAD_FIELD.format(field=field, value=shown))


def test_show_prints_whole_number_class_labels(saved: ModelVersion, tmp_path: Path) -> None:
    # meta_checks allows integer labels; they are shown, not a TypeError.
    _copy(saved, tmp_path, "tiny", _set("classes", list(range(10))))
    result = runner.invoke(app, ["models", "show", "tiny", "--storage", str(tmp_path)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in result.stdout


def test_quantize_refuses_malformed_lineage_and_configs_before_any_work(
    saved: ModelVersion, tmp_path: Path
) -> None:
    for field, change, shown in (
        ("lineage", _set("lineage", "x"), "'x'"),
        ("configs", _set("configs", 7), "7"),
        ("configs", _set("configs", []), "[]"),
    ):
        storage = tmp_path / field / shown
        folder = _copy(saved, storage, "tiny", change)
        result = runner.invoke(app, ["models", "quantize", "tiny", "--storage", str(storage)])
        line = _one_error_line(result)
        assert line.startswith(
            f"model version {folder}: " + BAD_FIELD.format(field=field, value=shown)
        ), line
        # Nothing was registered.
        assert sorted(p.name for p in folder.parent.iterdir()) == ["v1"]


def test_quantize_refuses_a_config_that_does_not_validate(
    saved: ModelVersion, tmp_path: Path
) -> None:
    def change(meta: dict[str, Any]) -> None:
        meta["configs"][0]["model"]["depth"] = "deep"

    folder = _copy(saved, tmp_path, "tiny", change)
    result = runner.invoke(app, ["models", "quantize", "tiny", "--storage", str(tmp_path)])
    line = _one_error_line(result)
    assert line.startswith(f"model version {folder}: meta.json field 'configs.0' is "), line
    assert "model.depth" in line


def test_list_lists_the_others_and_marks_a_damaged_version(
    saved: ModelVersion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regtune.platform.cli.app import out

    monkeypatch.setattr(out, "width", 200)
    _copy(saved, tmp_path, "good")
    _copy(saved, tmp_path, "typed", _set("kind", 5))
    unreadable = _copy(saved, tmp_path, "unreadable")
    (unreadable / "meta.json").write_text("{not json")
    storage = str(tmp_path)
    show = {
        name: runner.invoke(app, ["models", "show", name, "--storage", storage])
        for name in ("typed", "unreadable")
    }
    errors = {name: _one_error_line(result) for name, result in show.items()}
    assert "meta.json field 'kind' is 5" in errors["typed"]

    result = runner.invoke(app, ["models", "list", "--storage", storage])
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if ":1" in line}
    assert set(rows) == {"good:1", "typed:1", "unreadable:1"}
    assert "(damaged)" not in rows["good:1"] and "single" in rows["good:1"]
    for name in ("typed:1", "unreadable:1"):
        assert "(damaged)" in rows[name] and "None" not in rows[name]
        assert rows[name].split("│")[3].strip() == "-"  # its kind, not read
    # Each damaged version's error, in show's words, one line each on stderr.
    assert result.stderr.splitlines() == [
        f"error: typed:1 is damaged: {errors['typed']}",
        f"error: unreadable:1 is damaged: {errors['unreadable']}",
    ]

    listed = runner.invoke(app, ["models", "list", "--storage", storage, "--json"])
    assert listed.exit_code == 1
    models = {m["name"]: m for m in json.loads(listed.stdout)["models"]}
    assert models["good"]["error"] is None and models["good"]["kind"] == "single"
    assert models["good"]["metrics"]["test_acc"] == saved.meta["metrics"]["test_acc"]
    for name in ("typed", "unreadable"):
        assert models[name]["error"] == errors[name]
        assert models[name]["kind"] is None and models[name]["versions"] == [1]


def test_list_marks_an_unreadable_file_or_unusable_field_damaged_and_lists_the_rest(
    saved: ModelVersion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder in place of weights.safetensors was an OSError traceback that stopped
    the listing; a string quantization was listed healthy (loading it crashed)."""
    from regtune.platform.cli.app import out

    monkeypatch.setattr(out, "width", 200)
    _copy(saved, tmp_path, "good")
    folder = _copy(saved, tmp_path, "folder")
    (folder / "weights.safetensors").unlink()
    (folder / "weights.safetensors").mkdir()
    _copy(saved, tmp_path, "quant", _set("quantization", "int8"))
    storage = str(tmp_path)
    errors = {
        name: _one_error_line(runner.invoke(app, ["models", "show", name, "--storage", storage]))
        for name in ("folder", "quant")
    }
    assert errors["folder"].startswith(
        f"model version {folder}: file weights.safetensors cannot be read ("
    )
    assert "meta.json field 'quantization' is 'int8'; allowed: null" in errors["quant"]

    result = runner.invoke(app, ["models", "list", "--storage", storage])
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if ":1" in line}
    assert set(rows) == {"good:1", "folder:1", "quant:1"}
    assert "(damaged)" not in rows["good:1"]
    assert "(damaged)" in rows["folder:1"] and "(damaged)" in rows["quant:1"]
    assert result.stderr.splitlines() == [
        f"error: folder:1 is damaged: {errors['folder']}",
        f"error: quant:1 is damaged: {errors['quant']}",
    ]


def test_distill_refuses_a_teacher_with_malformed_configs_in_the_usual_words(
    saved: ModelVersion, tmp_path: Path
) -> None:
    """``configs: "x"`` crashed distill with a ValueError traceback."""
    folder = _copy(saved, tmp_path, "tiny", _set("configs", "x"))
    result = runner.invoke(app, ["distill", "tiny", "--storage", str(tmp_path), "--epochs", "1"])
    line = _one_error_line(result)
    assert line.startswith(
        f"model version {folder}: " + BAD_FIELD.format(field="configs", value="'x'")
    )
    assert sorted(p.name for p in folder.parent.iterdir()) == ["v1"]


def test_show_names_only_the_settings_a_member_uses(saved: ModelVersion, tmp_path: Path) -> None:
    """A logistic regression was shown as "logreg w128 d2"."""
    from regtune.platform.cli.models import member_label
    from regtune.trainables.config import ModelConfig

    assert member_label(ModelConfig(arch="logreg")) == "logreg"
    assert member_label(ModelConfig(arch="mlp", width=16, depth=3)) == "mlp w16 d3"
    assert member_label(ModelConfig(arch="cnn", width=64)) == "cnn w64"
    logreg = {"arch": "logreg", "width": 128, "depth": 2, "dropout": 0.0}
    _copy(saved, tmp_path, "tiny", _set("architecture.members.0.model", logreg))
    result = runner.invoke(app, ["models", "show", "tiny", "--storage", str(tmp_path)])
    assert result.exit_code == 0, (result.output, result.exception)
    members = [line for line in result.stdout.splitlines() if "members" in line]
    assert len(members) == 1 and "logreg" in members[0] and "w128" not in members[0]


def test_diff_leaves_out_float_noise(saved: ModelVersion, tmp_path: Path) -> None:
    """The same metric measured again differed in its 9th digit and was listed."""
    one = saved.meta["metrics"]["test_ece"]
    _copy(saved, tmp_path, "tiny")
    second = tmp_path / "registry" / "tiny" / "v2"

    def noise(meta: dict[str, Any]) -> None:
        meta["name"], meta["version"] = "tiny", 2
        meta["metrics"]["test_ece"] = one * (1 + 1e-8)

    _rewrite(saved, second, noise)
    storage = str(tmp_path)
    result = runner.invoke(app, ["models", "diff", "tiny:1", "tiny:2", "--storage", storage])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "tiny:1 and tiny:2 have the same config, metrics and lineage" in result.stdout
    listed = runner.invoke(
        app, ["models", "diff", "tiny:1", "tiny:2", "--storage", storage, "--json"]
    )
    assert json.loads(listed.stdout)["changes"] == {}
