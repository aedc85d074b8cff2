"""The analysis runs on a laptop over a copied results folder: it never imports Ray."""

from __future__ import annotations

import subprocess
import sys

import regtune.platform.analysis as analysis


def test_analysis_imports_no_ray() -> None:
    modules = [
        "regtune.platform.analysis",
        *(
            f"regtune.platform.analysis.{m}"
            for m in (
                "curves",
                "summary",
                "swept",
                "path",
                "front",
                "pareto",
                "diagnosis",
                "verdict",
                "best",
                "columns",
                "compare",
                "load",
                "run",
                "figures",
                "report",
            )
        ),
    ]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules)
    code += "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_analysis_imports_no_torch() -> None:
    # The analysis reads metric names through regtune.trainables.metric_names (stdlib only).
    code = (
        "import sys\nimport regtune.platform.analysis.run, regtune.platform.analysis.report\n"
        "import regtune.platform.cli.analyze\nprint('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_api_is_what_is_exported() -> None:
    public = {name for name in dir(analysis) if not name.startswith("_")}
    exported = set(analysis.__all__)
    assert exported <= public
    modules = {
        "best",
        "columns",
        "compare",
        "curves",
        "diagnosis",
        "front",
        "kept",
        "load",
        "pareto",
        "path",
        "run",
        "summary",
        "swept",
        "verdict",
        "figures",
        "report",
    }
    assert public - exported <= modules | {"annotations"}
