"""A registered model version: write it once, read it anywhere without Ray Tune.

A version directory holds ``weights.safetensors`` (every member's tensors,
never pickle) and ``meta.json``::

    format, format_version, name, version, kind ("single" | "ensemble" | "student"),
    created_at, architecture {members: [{model, spectral_norm}], input_shape, n_classes},
    configs [each member's training config], schema (FeatureSchema JSON), classes,
    input_shape, metrics (see registry.evaluation), dataset {name, fingerprint, config},
    reference (training-input summary for drift, see registry.reference),
    lineage {experiment, trials, teacher, ...}, quantization (None or its record),
    code {regtune, torch, git}, files {name: {bytes, sha256}}, meta_sha256

Writes are atomic: everything is staged in a hidden directory next to the
versions and renamed to ``v<N>`` in one step; if another writer took ``N``
first the rename fails and the next number is tried, so two writers never
share a number and a reader never sees a half-written version.

Reading (:func:`load_version`) imports torch, safetensors and the model
builders only: neither Ray Tune nor the training loop.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import regtune
from regtune.errors import CheckpointError, SpecError
from regtune.platform.registry.evaluation import evaluate_module, predict_classes
from regtune.platform.registry.integrity import (
    DIGEST_KEY,
    file_entry,
    meta_digest,
    verify_files,
    verify_meta,
)
from regtune.platform.registry.location import (
    META_FILE,
    WEIGHTS_FILE,
    check_name,
    list_models,
    list_versions,
    local_root,
    parse_ref,
    version_dir,
)
from regtune.platform.registry.modules import build_version_module, member_prefix
from regtune.platform.registry.reference import reference_summary
from regtune.trainables.config import TrainConfig, parse_train_config
from regtune.trainables.data import Dataset
from regtune.trainables.schema import FeatureSchema

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "KINDS",
    "Member",
    "ModelVersion",
    "build_module",
    "load_version",
    "read_meta",
    "resolve_ref",
    "robust_settings",
    "save_version",
    "write_version",
]

FORMAT = "regtune-model"
FORMAT_VERSION = 1
Kind = Literal["single", "ensemble", "student"]
KINDS: tuple[str, ...] = ("single", "ensemble", "student")
#: Attempts at claiming a version number before giving up (each loses a race).
MAX_CLAIMS = 1000

NO_VERSIONS = "model {name!r} has no versions under {root}; registered models: {models}"
NO_SUCH_VERSION = "model {name!r} has no version {version} under {root}; versions: {versions}"
NOT_A_VERSION = "{path} is not a model version directory (no meta.json)"
BAD_META = "model version {dir}: file meta.json cannot be read ({error})"
NOT_OURS = "model version {dir}: file meta.json is not a {fmt} v{version} file ({what})"
BAD_WEIGHTS_FILE = "model version {dir}: file weights.safetensors cannot be read ({error})"
BAD_KIND = "kind {kind!r} is not allowed; allowed: {allowed}"
NO_MEMBERS = "a model version needs at least one member network"
MIXED_ARCH = (
    "member {index}: dataset {what} differs from member 0's; an ensemble's members must be "
    "trained on the same dataset"
)


@dataclass(frozen=True)
class Member:
    """One network of a version: its training config and trained weights."""

    config: TrainConfig | Mapping[str, Any]
    state: Mapping[str, torch.Tensor]
    trial_id: str | None = None

    @classmethod
    def from_model(
        cls, config: TrainConfig | Mapping[str, Any], model: nn.Module, trial_id: str | None = None
    ) -> Member:
        """A member from a trained module (its ``state_dict`` is copied to the CPU)."""
        state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
        return cls(config=config, state=state, trial_id=trial_id)


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, loaded and verified (see the module docstring)."""

    name: str
    version: int
    path: str
    meta: dict[str, Any]
    schema: FeatureSchema
    classes: list[str]
    reference: dict[str, Any]
    module: nn.Module = field(repr=False)
    kind: str = "single"
    quantized: bool = False

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    @property
    def metrics(self) -> dict[str, float]:
        """The version's recorded metrics."""
        return dict(self.meta.get("metrics", {}))


# -- writing ------------------------------------------------------------------------------


def _code_version() -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    git: str | None
    try:
        done = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        git = (done.stdout.strip() or None) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        git = None
    return {"regtune": regtune.__version__, "torch": torch.__version__.split("+")[0], "git": git}


def _architecture(configs: Sequence[TrainConfig], dataset: Dataset) -> dict[str, Any]:
    return {
        "members": [
            {"model": c.model.model_dump(mode="json"), "spectral_norm": c.penalties.spectral_norm}
            for c in configs
        ],
        "input_shape": list(dataset.input_shape),
        "n_classes": dataset.n_classes,
    }


def robust_settings(
    configs: Sequence[TrainConfig | Mapping[str, Any]],
) -> dict[str, Any] | None:
    """The PGD settings of the first member's training config (None: robustness not measured)."""
    t = parse_train_config(configs[0]).training
    if t.robust_every <= 0:
        return None
    return {"eps": t.robust_eps, "steps": t.robust_steps, "samples": t.robust_samples}


def _checked_configs(members: Sequence[Member]) -> list[TrainConfig]:
    if not members:
        raise SpecError(NO_MEMBERS)
    configs = [parse_train_config(m.config) for m in members]
    first = configs[0].dataset.model_dump(mode="json", exclude={"path"})
    for index, cfg in enumerate(configs[1:], start=1):
        if cfg.dataset.model_dump(mode="json", exclude={"path"}) != first:
            raise SpecError(MIXED_ARCH.format(index=index, what="config"))
    return configs


def build_module(members: Sequence[Member], dataset: Dataset) -> nn.Module:
    """The module a version of ``members`` would serve (before it is written)."""
    configs = _checked_configs(members)
    tensors = {
        f"{member_prefix(i)}{k}": v for i, m in enumerate(members) for k, v in m.state.items()
    }
    return build_version_module(_architecture(configs, dataset), tensors, source="<memory>")


def save_version(
    name: str,
    members: Sequence[Member],
    dataset: Dataset,
    *,
    kind: Kind | None = None,
    metrics: Mapping[str, float] | None = None,
    lineage: Mapping[str, Any] | None = None,
    root: str | None = None,
) -> ModelVersion:
    """Register ``members`` (one network, or an ensemble of several) as ``name``'s next version.

    Args:
        dataset: the dataset the members were trained on; its training split
            gives the drift reference, its test split the metrics, its schema
            the encoding a server applies to raw records.
        kind: ``single``/``ensemble`` by member count unless given (``student``).
        metrics: precomputed :func:`evaluate_module` output (computed when None).
        lineage: where the version came from (experiment, trials, teacher, ...).
        root: registry root (default :func:`registry_root`).

    Returns:
        The written version, read back and verified.

    Raises:
        SpecError: a bad name or kind, no members, members of different datasets.
    """
    check_name(name)
    configs = _checked_configs(members)
    kind = kind or ("single" if len(members) == 1 else "ensemble")
    if kind not in KINDS:
        raise SpecError(BAD_KIND.format(kind=kind, allowed=", ".join(KINDS)))
    architecture = _architecture(configs, dataset)
    tensors = {
        f"{member_prefix(i)}{k}": v.detach().to("cpu").contiguous().clone()
        for i, m in enumerate(members)
        for k, v in m.state.items()
    }
    module = build_version_module(architecture, tensors, source="<memory>")
    if metrics is None:
        metrics = evaluate_module(module, dataset, robust=robust_settings(configs))
    reference = reference_summary(
        dataset.schema, dataset.train.x, predict_classes(module, dataset.train.x)
    )
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": 0,  # set when the number is claimed
        "kind": kind,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "architecture": architecture,
        "configs": [c.model_dump(mode="json") for c in configs],
        "schema": json.loads(dataset.schema.to_json()),
        "classes": [str(c) for c in dataset.schema.classes],
        "input_shape": list(dataset.input_shape),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "dataset": {
            "name": dataset.name,
            "fingerprint": dataset.fingerprint,
            "config": configs[0].dataset.model_dump(mode="json"),
            "rows": {
                "train": int(dataset.train.y.shape[0]),
                "val": int(dataset.val.y.shape[0]),
                "test": int(dataset.test.y.shape[0]),
            },
        },
        "reference": reference,
        "lineage": {
            "trials": [m.trial_id for m in members],
            **dict(lineage or {}),
        },
        "quantization": None,
        "code": _code_version(),
    }
    return write_version(name, tensors, meta, root=root)


def _write_meta(directory: Path, record: dict[str, Any], number: int) -> None:
    record["version"] = number
    record.pop(DIGEST_KEY, None)
    record[DIGEST_KEY] = meta_digest(record)
    (directory / META_FILE).write_text(json.dumps(record, indent=1, allow_nan=False))


def write_version(
    name: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *, root: str | None
) -> ModelVersion:
    """Write ``tensors`` + ``meta`` as ``name``'s next version, atomically; return it loaded.

    ``meta`` gets its ``name``, ``version``, ``files`` and digest filled in.
    """
    base = local_root(root) / check_name(name)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{uuid.uuid4().hex[:8]}-", dir=base))
    try:
        save_file(dict(tensors), str(staging / WEIGHTS_FILE))
        record = dict(meta)
        record["name"] = name
        record["files"] = {WEIGHTS_FILE: file_entry(staging / WEIGHTS_FILE)}
        _write_meta(staging, record, 0)
        load_version(str(staging))  # a version that cannot be read back is never published
        for _ in range(MAX_CLAIMS):
            existing = list_versions(name, root=str(base.parent))
            number = (existing[-1] if existing else 0) + 1
            _write_meta(staging, record, number)
            target = version_dir(base.parent, name, number)
            try:
                # rename() onto an existing non-empty directory fails: the claim is atomic.
                os.rename(staging, target)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or target.exists():
                    continue
                raise
            return load_version(str(target))
        raise CheckpointError(f"could not claim a version number for {name!r} under {base}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- reading ------------------------------------------------------------------------------


def resolve_ref(ref: str, root: str | None = None) -> tuple[Path, str | None, int | None]:
    """The directory a reference names, with its model name and version (None for a path).

    Raises:
        SpecError: a malformed reference, an unknown model or version.
        CheckpointError: a path that is not a version directory.
    """
    parsed = parse_ref(ref)
    if parsed.path is not None:
        if not (parsed.path / META_FILE).is_file():
            raise CheckpointError(NOT_A_VERSION.format(path=parsed.path))
        return parsed.path.resolve(), None, None
    assert parsed.name is not None  # parse_ref gives a name or a path
    base = local_root(root)
    versions = list_versions(parsed.name, root=str(base))
    if not versions:
        raise SpecError(
            NO_VERSIONS.format(name=parsed.name, root=base, models=list_models(root=str(base)))
        )
    number = parsed.version if parsed.version is not None else versions[-1]
    if number not in versions:
        raise SpecError(
            NO_SUCH_VERSION.format(name=parsed.name, version=number, root=base, versions=versions)
        )
    return version_dir(base, parsed.name, number), parsed.name, number


def read_meta(directory: Path) -> dict[str, Any]:
    """Parse and verify a version's meta.json and the files it lists.

    Raises:
        CheckpointError: naming the file that is missing, truncated or modified.
    """
    try:
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(BAD_META.format(dir=directory, error=exc)) from exc
    if not isinstance(meta, dict):
        raise CheckpointError(BAD_META.format(dir=directory, error="not a JSON object"))
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        what = f"format {meta.get('format')!r} v{meta.get('format_version')!r}"
        raise CheckpointError(
            NOT_OURS.format(dir=directory, fmt=FORMAT, version=FORMAT_VERSION, what=what)
        )
    verify_meta(meta, directory)
    verify_files(meta, directory)
    return meta


def load_version(ref: str, *, root: str | None = None) -> ModelVersion:
    """Load and verify a version: ``"name"`` (latest), ``"name:3"`` or a directory.

    Raises:
        SpecError: a malformed reference, an unknown model or version.
        CheckpointError: a missing, truncated or modified file (named), or
            weights that do not fit the recorded architecture.
    """
    directory, name, number = resolve_ref(ref, root)
    meta = read_meta(directory)
    if number is not None and (meta.get("version") != number or meta.get("name") != name):
        raise CheckpointError(
            NOT_OURS.format(
                dir=directory,
                fmt=FORMAT,
                version=FORMAT_VERSION,
                what=f"it records {meta.get('name')}:{meta.get('version')}",
            )
        )
    try:
        tensors = load_file(str(directory / WEIGHTS_FILE))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(BAD_WEIGHTS_FILE.format(dir=directory, error=exc)) from exc
    try:
        schema = FeatureSchema.from_json(json.dumps(meta["schema"]), source=str(directory))
        architecture = meta["architecture"]
        quantization = meta.get("quantization")
        classes = [str(c) for c in meta["classes"]]
        reference = dict(meta["reference"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(BAD_META.format(dir=directory, error=exc)) from exc
    if quantization:
        from regtune.platform.registry.quantize import build_quantized_module

        module = build_quantized_module(architecture, tensors, quantization, source=str(directory))
    else:
        module = build_version_module(architecture, tensors, source=str(directory))
    return ModelVersion(
        name=str(meta["name"]),
        version=int(meta["version"]),
        path=str(directory),
        meta=meta,
        schema=schema,
        classes=classes,
        reference=reference,
        module=module,
        kind=str(meta.get("kind", "single")),
        quantized=bool(quantization),
    )
