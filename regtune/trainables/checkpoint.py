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

__all__ = [
    "BAD_FIELD_MSG",
    "FORMAT_VERSION",
    "MISSING",
    "TENSORS_FILE",
    "TREE_FILE",
    "bad_field",
    "describe_value",
    "load_tree",
    "save_tree",
]

TENSORS_FILE = "tensors.safetensors"
TREE_FILE = "state.json"
_MARK = "__tensor__"
#: The only ``format_version`` this code writes and reads.
FORMAT_VERSION = 1

MISSING_FILE_MSG = "checkpoint {path} is missing {name}; expected the files {expected}"
CORRUPT_MSG = "checkpoint {path} cannot be read ({reason}); expected files written by regtune"
#: A field of ``state.json`` that parses but holds what no regtune writes there.
BAD_FIELD_MSG = (
    "checkpoint {path}: {file} field {field!r} holds {value}; allowed: {allowed} "
    "(nothing was changed)"
)
#: Longest shown part of a bad value (a whole config dump would hide the message).
_SHOWN_CHARS = 60


class _Missing:
    """The value :func:`bad_field` is given for a field that is not there."""

    def __repr__(self) -> str:
        return "nothing (the field is missing)"


#: Pass as the value of :func:`bad_field` when the field is absent.
MISSING: Any = _Missing()


def describe_value(value: Any) -> str:
    """A short description of a stored value for an error message."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, _Missing):
        return repr(value)
    if isinstance(value, Mapping):
        return f"a mapping with keys {sorted(map(str, value))[:6]}"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[: _SHOWN_CHARS - 3]}..."


def bad_field(
    path: str | os.PathLike[str], field: str, value: Any, allowed: str
) -> CheckpointError:
    """The error for ``field`` of ``path``'s ``state.json`` holding ``value``
    (``field`` as it is written in the file: ``tree.epoch``, ``tree.history[0]``)."""
    return CheckpointError(
        BAD_FIELD_MSG.format(
            path=path, file=TREE_FILE, field=field, value=describe_value(value), allowed=allowed
        )
    )


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
    skeleton = {"format_version": FORMAT_VERSION, "tree": _split(tree, "", tensors)}
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
        CheckpointError: a file is missing or unreadable, or ``state.json``
            has another ``format_version`` than :data:`FORMAT_VERSION`.
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
        if not isinstance(skeleton, dict):
            raise TypeError(f"{TREE_FILE} holds {describe_value(skeleton)}, not a mapping")
        version = skeleton.get("format_version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise bad_field(
                path,
                "format_version",
                skeleton.get("format_version", MISSING),
                f"{FORMAT_VERSION} (the only checkpoint format this regtune version reads)",
            )
        if not isinstance(skeleton.get("tree"), dict):
            raise bad_field(
                path, "tree", skeleton.get("tree", MISSING), "a mapping (the training state)"
            )
        tree = _join(skeleton["tree"], tensors)
    except (SafetensorError, json.JSONDecodeError, KeyError, TypeError, OSError) as exc:
        raise CheckpointError(CORRUPT_MSG.format(path=path, reason=exc)) from exc
    assert isinstance(tree, dict)  # _join keeps a mapping a mapping
    return tree
