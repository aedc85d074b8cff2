"""Checkpoints as safetensors + JSON: nothing is ever unpickled.

A training state is a nested mapping of tensors and JSON-able values (model
and optimizer state, RNG states, early-stopping bookkeeping). It is split in
two files inside one directory:

- ``tensors.safetensors``: every tensor leaf, keyed by its path
  (``optimizer/state/0/exp_avg``);
- ``state.json``: the rest of the tree, with each tensor leaf replaced by a
  ``{"__tensor__": "path"}`` marker.

Writes go to a temporary sibling directory that is renamed into place, so a
process killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from regtune.errors import CheckpointError

__all__ = ["TENSORS_FILE", "TREE_FILE", "load_tree", "save_tree"]

TENSORS_FILE = "tensors.safetensors"
TREE_FILE = "state.json"
_MARK = "__tensor__"
_FORMAT_VERSION = 1

MISSING_FILE_MSG = "checkpoint {path} is missing {name}; expected the files {expected}"
CORRUPT_MSG = "checkpoint {path} cannot be read ({reason}); expected files written by regtune"


def _split(node: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, torch.Tensor):
        # safetensors refuses shared or non-contiguous storage; a copy is cheap here.
        tensors[path] = node.detach().to("cpu").contiguous().clone()
        return {_MARK: path}
    if isinstance(node, Mapping):
        out = {}
        for key, value in node.items():
            # JSON keys are strings: remember int keys (optimizer state ids).
            skey = f"int:{key}" if isinstance(key, int) else str(key)
            out[skey] = _split(value, f"{path}/{skey}" if path else skey, tensors)
        return out
    if isinstance(node, (list, tuple)):
        return [_split(v, f"{path}/{i}", tensors) for i, v in enumerate(node)]
    return node


def _join(node: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if set(node) == {_MARK}:
            return tensors[node[_MARK]]
        return {
            (int(k[4:]) if k.startswith("int:") else k): _join(v, tensors) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_join(v, tensors) for v in node]
    return node


def save_tree(tree: Mapping[str, Any], directory: str | os.PathLike[str]) -> Path:
    """Write ``tree`` to ``directory`` atomically (replacing what was there)."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {"format_version": _FORMAT_VERSION, "tree": _split(tree, "", tensors)}
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_file(tensors, str(tmp / TENSORS_FILE))
        (tmp / TREE_FILE).write_text(json.dumps(skeleton))
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_tree(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a tree written by :func:`save_tree`.

    Raises:
        CheckpointError: a file is missing or unreadable.
    """
    path = Path(directory)
    for name in (TENSORS_FILE, TREE_FILE):
        if not (path / name).is_file():
            raise CheckpointError(
                MISSING_FILE_MSG.format(
                    path=path, name=name, expected=f"{TENSORS_FILE}, {TREE_FILE}"
                )
            )
    try:
        tensors = load_file(str(path / TENSORS_FILE))
        skeleton = json.loads((path / TREE_FILE).read_text())
        tree = _join(skeleton["tree"], tensors)
    except (SafetensorError, json.JSONDecodeError, KeyError, TypeError, OSError) as exc:
        raise CheckpointError(CORRUPT_MSG.format(path=path, reason=exc)) from exc
    if not isinstance(tree, dict):
        raise CheckpointError(CORRUPT_MSG.format(path=path, reason="root is not a mapping"))
    return tree
