"""``regtune serve --write-config`` refuses a malformed meta.json as the replicas would.

The config file is written without torch: the versions are checked from their
files (:func:`regtune.platform.cli.serve.check_versions`), and a meta.json
field a replica would refuse on load (the fields ``check_meta`` covers and the
post-processing) is refused there with the same words.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regtune.errors import CheckpointError
from regtune.platform.cli import app
from regtune.platform.cli.serve import check_versions
from regtune.platform.registry.integrity import DIGEST_KEY, meta_digest
from regtune.serve.service import load_service
from regtune.serve.settings import parse_settings
from tests.serve.conftest import MODEL, Registry

runner = CliRunner()


def _edited_copy(root: Path, number: int, edit: dict[str, object]) -> None:
    """Version 1 copied to ``v<number>`` (recording that number) with ``edit``
    applied to its meta.json, the digest recomputed: only the field is wrong."""
    target = root / MODEL / f"v{number}"
    shutil.copytree(root / MODEL / "v1", target)
    meta = json.loads((target / "meta.json").read_text())
    meta.update({"version": number, **edit})
    meta[DIGEST_KEY] = meta_digest(meta)
    (target / "meta.json").write_text(json.dumps(meta))


def test_a_bad_meta_field_is_refused_with_the_replicas_words(
    tmp_path: Path, registry: Registry
) -> None:
    root = tmp_path / "registry"
    shutil.copytree(registry.root, root)
    meta = json.loads((root / MODEL / "v1" / "meta.json").read_text())
    reference = {**meta["reference"], "numeric_source": "guessed"}
    groups = [str(v) for v in meta["schema"]["sensitive_values"]]
    _edited_copy(root, 7, {"classes": meta["classes"][:1]})  # one label for two outputs
    _edited_copy(root, 8, {"reference": reference})
    _edited_copy(root, 9, {"postprocessing": {"groups": ["nobody"]}})
    _edited_copy(root, 10, {"postprocessing": {"groups": groups, "temperatures": [-1.0]}})
    cases = [
        (["--canary", "7"], {"canary": "7"}, "field 'classes' is "),
        (["--shadow", "8"], {"shadow": "8"}, "field 'reference.numeric_source' is 'guessed'"),
        ([], {"model": f"{MODEL}:8"}, "field 'reference.numeric_source' is 'guessed'"),
        (["--canary", "9"], {"canary": "9"}, "field 'postprocessing.groups' is ['nobody']"),
        (["--shadow", "10"], {"shadow": "10"}, "field 'postprocessing.temperatures' is [-1.0]"),
    ]
    for flags, extra, words in cases:
        settings = parse_settings({"model": f"{MODEL}:1", "registry": str(root), **extra})
        with pytest.raises(CheckpointError) as checked:
            check_versions(settings)
        with pytest.raises(CheckpointError) as loaded:
            load_service(settings)
        assert str(checked.value) == str(loaded.value), extra
        assert words in str(checked.value), (extra, str(checked.value))
        target = tmp_path / "refused.yaml"
        model = str(extra.get("model", f"{MODEL}:1"))
        args = ["serve", model, *flags, "--set", f"registry={root}", "--write-config",
                str(target)]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert words in " ".join(result.output.split()), result.output
        assert not target.exists()
