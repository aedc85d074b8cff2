"""Every complete YAML example in README.md and docs/*.md loads as the CLI would.

A ```yaml block whose top-level keys include ``name`` and a sweep-only key
(:data:`regtune.search_spaces.load.SWEEP_ONLY_KEYS`: objectives, scheduler,
searcher, budget, ...) is a sweep spec and must pass :func:`load_spec`, the
loader behind ``regtune sweep``. A block with ``dataset`` and no sweep-only
key is a training config and must pass :func:`load_train_config`, the loader
behind ``regtune train`` (which also refuses idle keys). Anything else is a
fragment (a ``penalties:`` excerpt, a Serve config) and is skipped. Each
block is written to a file first, so a failure names its lines.

No training, no Ray, no network: the built-in datasets are only named.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from regtune.search_spaces import load_spec, load_train_config
from regtune.search_spaces.load import SWEEP_ONLY_KEYS

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")

#: Complete examples found when this test was written (1 sweep spec in
#: docs/sweeps.md, 1 training config in docs/trainables.md). Fewer means the
#: extraction broke or examples were cut to fragments; raise it when adding one.
MIN_SPECS = 1
MIN_CONFIGS = 1


def yaml_blocks(path: Path) -> list[tuple[int, str]]:
    """(line of the opening fence, text) of each ```yaml block in ``path``."""
    blocks: list[tuple[int, str]] = []
    lang: str | None = None
    start, indent, body = 0, "", []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = FENCE.match(line)
        if lang is None:
            if match:
                lang, indent, start, body = match.group(2).lower(), match.group(1), number, []
            continue
        if match and not match.group(2):
            if lang in ("yaml", "yml"):
                blocks.append((start, "\n".join(body) + "\n"))
            lang = None
            continue
        body.append(line.removeprefix(indent))
    assert lang is None, f"{path.name}:{start}: a ``` fence is never closed"
    return blocks


def kind_of(text: str) -> str:
    """``spec``, ``config`` or ``fragment``: which loader the block is for."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        return "fragment"
    keys = set(map(str, data))
    if "name" in keys and keys & (SWEEP_ONLY_KEYS - {"name"}):
        return "spec"
    if "dataset" in keys and not keys & SWEEP_ONLY_KEYS:
        return "config"
    return "fragment"


def _collect() -> list[tuple[str, str, str]]:
    found = []
    for path in DOC_FILES:
        for line, text in yaml_blocks(path):
            found.append((f"{path.relative_to(ROOT)}:{line}", kind_of(text), text))
    return found


BLOCKS = _collect()
COMPLETE = [b for b in BLOCKS if b[1] != "fragment"]


def test_complete_examples_are_found() -> None:
    kinds = [kind for _, kind, _ in COMPLETE]
    assert kinds.count("spec") >= MIN_SPECS, [where for where, *_ in BLOCKS]
    assert kinds.count("config") >= MIN_CONFIGS, [where for where, *_ in BLOCKS]


@pytest.mark.parametrize(("where", "kind", "text"), COMPLETE, ids=[b[0] for b in COMPLETE])
def test_example_loads(where: str, kind: str, text: str, tmp_path: Path) -> None:
    file = tmp_path / "example.yaml"
    file.write_text(text, encoding="utf-8")
    if kind == "spec":
        spec = load_spec(file)
        assert spec.name
    else:
        config = load_train_config(file)
        assert config["dataset"]


def test_fence_parser(tmp_path: Path) -> None:
    doc = (
        "text\n```yaml\na: 1\n```\n- item\n  ```yaml\n  dataset: digits\n  ```\n"
        "```bash\nregtune train x.yaml\n```\n"
    )
    path = tmp_path / "doc.md"
    path.write_text(doc, encoding="utf-8")
    assert yaml_blocks(path) == [(2, "a: 1\n"), (6, "dataset: digits\n")]
    assert kind_of("dataset: digits\n") == "config"
    assert kind_of("name: x\ndataset: digits\nbudget: {samples: 1}\n") == "spec"
    assert kind_of("penalties: {l2: 0.1}\n") == "fragment"
    assert kind_of("resources: {fuse: 4}\n") == "fragment"
