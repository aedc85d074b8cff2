"""Figure file names fit the 255 bytes a file system allows for any experiment name the
platform accepts (255 characters): a long name is shortened in the figure stem (a prefix and
a short hash, the same every time); a short one is kept as it was. The HTML report
references the figures written."""

from __future__ import annotations

import hashlib
from pathlib import Path

from regtune.platform.analysis.compare import MAX_FIGURE_STEM, figure_stem
from tests.platform.cli.invoke import invoke
from tests.platform.results.test_no_epoch_config import _store


def test_short_names_keep_their_stem() -> None:
    assert figure_stem("quick") == "quick"
    assert figure_stem("a/quick") == "a_quick"
    assert figure_stem("") == "experiment"
    assert figure_stem("q" * MAX_FIGURE_STEM) == "q" * MAX_FIGURE_STEM


def test_long_names_get_a_short_deterministic_stem() -> None:
    a, b = "e" * 255, "e" * 254 + "f"
    assert len(figure_stem(a)) == MAX_FIGURE_STEM
    # The first 109 characters, "-", the first 10 hex digits of the name's SHA-256.
    assert figure_stem(a) == "e" * 109 + "-" + hashlib.sha256(a.encode()).hexdigest()[:10]
    assert figure_stem(a).startswith("e" * 100)
    assert figure_stem(a) != figure_stem(b)
    # distinct_names can make <parent>/<name>#2 longer than 255 characters.
    assert len(figure_stem("p" * 255 + "/" + a + "#2")) == MAX_FIGURE_STEM


def test_figures_of_an_experiment_with_a_255_character_name_are_written(
    tmp_path: Path,
) -> None:
    exp = tmp_path / ("e" * 255)
    _store(str(exp))
    out, html = tmp_path / "figs", tmp_path / "report.html"
    result = invoke("analyze", str(exp), "--figures", str(out), "--html", str(html))
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written
    assert all(len(name.encode()) <= 255 for name in written)
    assert all(name.startswith(figure_stem("e" * 255) + "-") for name in written)
    page = html.read_text(encoding="utf-8")
    for name in written:
        assert f'alt="{name.removesuffix(".png")}"' in page
