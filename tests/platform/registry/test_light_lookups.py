"""Looking a model up never imports torch: `models list/show` and a typo'd `serve NAME`
answer in about a second of CPU, not four."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from regtune.platform.registry import ModelVersion

# Runs the CLI in a fresh interpreter and reports (exit code, output, torch imported?).
SCRIPT = """
import json, sys
from typer.testing import CliRunner
from regtune.platform.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps([result.exit_code, result.output, "torch" in sys.modules]))
"""


def _cli(*args: str) -> tuple[int, str, bool]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, check=True
    )
    code, output, torch_imported = json.loads(proc.stdout.strip().splitlines()[-1])
    return int(code), str(output), bool(torch_imported)


def test_lookups_answer_without_torch(tiny_version: ModelVersion, registry: str) -> None:
    storage = str(Path(registry).parent)
    code, output, torch_imported = _cli("models", "list", "--storage", storage, "--json")
    assert code == 0 and not torch_imported
    assert [m["name"] for m in json.loads(output)["models"]] == ["tiny"]
    code, output, torch_imported = _cli("models", "show", "tiny:1", "--storage", storage)
    assert code == 0 and not torch_imported and "tiny" in output
    for ref in ("nosuch", "tiny:7"):
        code, output, torch_imported = _cli("serve", ref, "--storage", storage)
        assert code == 2 and not torch_imported
        assert ("has no versions" if ref == "nosuch" else "has no version 7") in output
    # The look-up goes where the settings will: --set storage= moves it too.
    code, output, _ = _cli("serve", "nosuch", "--set", f"storage={storage}")
    assert code == 2 and f"under {registry}" in output.replace("\n", "")
    # The package's torch-backed names still load on first use.
    import regtune.platform.registry as registry_pkg

    assert registry_pkg.load_version is not None and registry_pkg.ModelVersion is ModelVersion
