"""A registered model version: write it once, read it anywhere without Ray Tune.

A version directory holds ``weights.safetensors`` (every member's tensors,
never pickle) and ``meta.json``::

    format, format_version, name, version, kind ("single" | "ensemble" | "student"),
    created_at, architecture {members: [{model, spectral_norm}], input_shape, n_classes},
    configs [each member's training config], schema (FeatureSchema JSON), classes,
    input_shape, metrics (see registry.evaluation), dataset {name, fingerprint, config},
    reference (training-input summary for drift, see registry.reference),
    lineage {experiment, trials, teacher, ...}, quantization (None or its record),
    postprocessing (None or temperatures/thresholds, see registry.postprocess),
    code {regtune, torch, git}, files {name: {bytes, sha256}}, meta_sha256

Publishing guarantees (local paths and object stores alike): two writers
never get the same number, a reader never sees a half-written version, and
no version is published before its files have been read back and their
sizes and sha256 verified. How:

- Local disk: everything is staged in a hidden directory next to the
  versions (created honouring the umask, so the published folder is as
  readable as any other the user makes), read back, and renamed to ``v<N>``
  in one step, ``N`` one above every ``v<N>`` folder, published or not
  (:func:`~regtune.platform.registry.location.next_version_number`); if
  another writer took ``N`` first the rename fails and ``N+1`` is tried. A
  leftover ``v<N>/`` without ``meta.json`` is skipped, never reused.
- Object stores (``s3://``, ``gs://``; no atomic rename, and pyarrow has no
  conditional PUT): files are staged under ``.staging-<token>/`` and read
  back. Then ``N`` (the lowest number above every ``v<N>`` folder that
  no claim holds) is claimed by writing the empty object
  ``.claims/v<N>/<token>`` and listing ``.claims/v<N>/``: the writer wins
  ``N`` only if its token is the only one listed; otherwise it deletes its
  claim, waits a random moment (up to :data:`CLAIM_BACKOFF_S`) and tries
  again. A won claim is never deleted. Because a PUT is visible to every
  LIST that starts after it (S3 and GCS list with strong read-after-write
  consistency), of two winners of ``N`` the later PUT's LIST would have
  seen the earlier, never-deleted claim: so there is at most one. The
  winner copies the files into ``v<N>/``, verifies the copies' sizes and
  sha256, and writes ``meta.json`` last: that single PUT publishes the
  version. A writer that dies after claiming leaves a gap in the numbers
  (never a half version); its staging folder may remain (hidden, ignored).
  Writers that all lost their claims on ``N`` while another published a
  higher number go on above it, so concurrent writers can skip a number
  too: numbers are unique and grow with time, not always consecutive.

Reading (:func:`load_version`) imports torch, safetensors and the model
builders only: neither Ray Tune nor the training loop.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import math
import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow.fs as pafs
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import nn

import regtune
from regtune.errors import CheckpointError, SpecError
from regtune.platform.registry.evaluation import evaluate_module, predict_classes
from regtune.platform.registry.integrity import (
    BAD_META,
    DIGEST_KEY,
    FORMAT,
    FORMAT_VERSION,
    file_entry,
    meta_digest,
    read_meta,
    verify_files,
)
from regtune.platform.registry.location import (
    META_FILE,
    WEIGHTS_FILE,
    check_name,
    next_version_number,
    resolve_ref,
    root_place,
    version_number,
)
from regtune.platform.registry.meta_checks import KINDS as _META_KINDS
from regtune.platform.registry.meta_checks import read_checked
from regtune.platform.registry.modules import build_version_module, member_prefix
from regtune.platform.registry.postprocess import META_KEY, PostProcessing
from regtune.platform.registry.reference import reference_summary
from regtune.platform.registry.store import Place, place_of
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
    "check_finite_tensors",
    "check_same_data",
    "claim_number",
    "creation_record",
    "load_version",
    "read_meta",
    "resolve_ref",
    "robust_settings",
    "save_version",
    "write_version",
]

Kind = Literal["single", "ensemble", "student"]
KINDS: tuple[str, ...] = _META_KINDS
#: Attempts at claiming a version number before giving up (each loses a race).
MAX_CLAIMS = 1000
#: Folder (under a model) of the version-number claims on object stores.
CLAIMS_DIR = ".claims"
#: Longest random pause, in seconds, after losing a claim (breaks lock-step retries).
CLAIM_BACKOFF_S = 0.05

BAD_WEIGHTS_FILE = "model version {dir}: file weights.safetensors cannot be read ({error})"
BAD_KIND = "kind {kind!r} is not allowed; allowed: {allowed}"
NON_FINITE_WEIGHTS = (
    "tensor {tensor!r} holds {n} non-finite values (NaN or infinite) of {total}; a model "
    "version needs finite weights (did training diverge?); nothing was written"
)
NO_MEMBERS = "a model version needs at least one member network"
DATASET_CHANGED = (
    "{what} was trained on dataset {name!r} with fingerprint {then}, but the dataset loads "
    "now with fingerprint {now}: the data changed since training, so the model cannot be "
    "scored (or distilled) fairly; restore the data it was trained on, or train again"
)
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
    #: Each member's training config (meta.json ``configs``), parsed once when
    #: the version was loaded (:func:`~.meta_checks.check_meta`).
    configs: list[TrainConfig] = field(repr=False)
    kind: str = "single"
    quantized: bool = False
    #: Temperatures and per-group thresholds a server applies after the
    #: module (see :mod:`regtune.platform.registry.postprocess`); None: the
    #: plain softmax and arg-max.
    postprocessing: PostProcessing | None = None

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    @property
    def metrics(self) -> dict[str, float]:
        """The version's recorded metrics (a metric stored as ``null``, one
        that had no finite value, reads back as NaN)."""
        return {
            str(k): math.nan if v is None else float(v)
            for k, v in dict(self.meta.get("metrics", {})).items()
        }


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


def creation_record() -> dict[str, Any]:
    """``created_at`` (now, UTC) and ``code`` (regtune, torch, git) of a version written now."""
    return {
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "code": _code_version(),
    }


def check_same_data(what: str, trained_on: str | None, dataset: Dataset) -> None:
    """Refuse to score, distill or quantize a model on data other than its own.

    Args:
        what: the model, as the message names it (``"trial 3f2a"``, ``"teacher adult:2"``).
        trained_on: the fingerprint its checkpoint or meta.json recorded (None:
            not recorded, e.g. a checkpoint older than fingerprints: not checked).
        dataset: the dataset as it loads now.

    Raises:
        CheckpointError: the fingerprints differ (both shown, with what to do).
    """
    if trained_on is not None and trained_on != dataset.fingerprint:
        raise CheckpointError(
            DATASET_CHANGED.format(
                what=what, name=dataset.name, then=trained_on[:12], now=dataset.fingerprint[:12]
            )
        )


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
    t = parse_train_config(configs[0], stored=True).training
    if t.robust_every <= 0:
        return None
    return {"eps": t.robust_eps, "steps": t.robust_steps, "samples": t.robust_samples}


def _checked_configs(members: Sequence[Member]) -> list[TrainConfig]:
    if not members:
        raise SpecError(NO_MEMBERS)
    configs = [parse_train_config(m.config, stored=True) for m in members]
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
    postprocessing: PostProcessing | None = None,
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
        postprocessing: temperatures/thresholds fitted for this module (see
            :mod:`.postfit`); they are stored in meta.json and the metrics
            (when computed here) are those of the post-processed decisions.

    Returns:
        The written version, read back and verified.

    Raises:
        SpecError: a bad name or kind, no members, members of different datasets.
        CheckpointError: a member's weights hold a NaN or an infinity (the
            tensor named), before anything is scored or written.
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
    check_finite_tensors(tensors)  # before scoring weights that cannot answer
    module = build_version_module(architecture, tensors, source="<memory>")
    if metrics is None:
        metrics = evaluate_module(
            module, dataset, robust=robust_settings(configs), post=postprocessing
        )
    reference = reference_summary(
        dataset.schema,
        dataset.train.x,
        predict_classes(module, dataset.train.x, dataset.train.s, post=postprocessing),
        # Exact raw training columns when the dataset carries them (see registry.reference).
        raw=getattr(dataset, "raw_train", None),
    )
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": 0,  # set when the number is claimed
        "kind": kind,
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
        META_KEY: None if postprocessing is None else postprocessing.to_meta(),
        **creation_record(),
    }
    return write_version(name, tensors, meta, root=root)


#: Sections of meta.json whose non-finite numbers are stored as ``null`` (a
#: metric that could not be measured, e.g. a gap with an empty group): JSON
#: has no NaN, and the number is still meaningful as "no value".
NULLED_SECTIONS = ("metrics", "lineage", "quantization")
NOT_FINITE = (
    "meta.json field {field!r} is {value}; allowed: a finite number (only metrics, lineage "
    "and quantization store a non-finite number, as null); nothing was written"
)


def check_finite_tensors(tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights holding a NaN or an infinity: such a module answers NaN
    probabilities (the server's 500 "model fault"), so it is never registered.

    Raises:
        CheckpointError: naming the first such tensor (``members.<i>.<key>``)
            and how many of its values are not finite.
    """
    for key, tensor in tensors.items():
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue  # integer tensors (int8 weights, counters) are always finite
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            raise CheckpointError(
                NON_FINITE_WEIGHTS.format(tensor=key, n=int((~finite).sum()), total=tensor.numel())
            )


def _nulled(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _nulled(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nulled(v) for v in value]
    return value


def _first_non_finite(value: Any, path: str) -> tuple[str, float] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    items: Any = ()
    if isinstance(value, Mapping):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    for where, item in items:
        found = _first_non_finite(item, where)
        if found is not None:
            return found
    return None


def _meta_bytes(record: dict[str, Any], number: int) -> bytes:
    record["version"] = number
    record.pop(DIGEST_KEY, None)
    found = _first_non_finite(record, "")
    if found is not None:
        raise CheckpointError(NOT_FINITE.format(field=found[0], value=found[1]))
    record[DIGEST_KEY] = meta_digest(record)
    return json.dumps(record, indent=1, allow_nan=False).encode()


def write_version(
    name: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *, root: str | None
) -> ModelVersion:
    """Write ``tensors`` + ``meta`` as ``name``'s next version; return it loaded.

    ``meta`` gets its ``name``, ``version``, ``files`` and digest filled in;
    non-finite numbers in its ``metrics``, ``lineage`` and ``quantization``
    are stored as ``null`` (:attr:`ModelVersion.metrics` reads them as NaN).

    Raises:
        CheckpointError: a non-finite number elsewhere (named), or a tensor
            holding a NaN or an infinity (named), before anything is written.
    See the module docstring for what is guaranteed under concurrent writers.
    """
    model = root_place(root).child(check_name(name))
    check_finite_tensors(tensors)
    weights = save_bytes(dict(tensors))
    record = dict(meta)
    for section in NULLED_SECTIONS:
        if section in record:
            record[section] = _nulled(record[section])
    record["name"] = name
    record["files"] = {WEIGHTS_FILE: file_entry(weights)}
    _meta_bytes(record, 0)  # refuses a non-finite number before anything is written
    if model.is_local:
        return _publish_local(Path(model.path), name, weights, record)
    return _publish_remote(model, name, weights, record)


def _publish_local(base: Path, name: str, weights: bytes, record: dict[str, Any]) -> ModelVersion:
    base.mkdir(parents=True, exist_ok=True)
    # mkdir honours the umask (tempfile.mkdtemp would make it 0700, and the
    # rename keeps that mode): a serving account must be able to read versions.
    staging = base / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    model = place_of(str(base))
    try:
        (staging / WEIGHTS_FILE).write_bytes(weights)
        (staging / META_FILE).write_bytes(_meta_bytes(record, 0))
        # A version that cannot be read back is never published.
        _load(place_of(str(staging)), None, None, staged=True)
        number = 0
        for _ in range(MAX_CLAIMS):
            number = max(number + 1, next_version_number(model))
            (staging / META_FILE).write_bytes(_meta_bytes(record, number))
            target = base / f"v{number}"
            try:
                # rename() onto an existing non-empty directory fails: the claim is atomic.
                os.rename(staging, target)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or target.exists():
                    continue  # taken (published, being written, or left over): try N+1
                raise
            return load_version(str(target))
        raise CheckpointError(f"could not claim a version number for {name!r} under {base}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _next_free(model: Place) -> int:
    """The lowest number above every ``v<N>`` folder that no live claim holds."""
    claims = model.child(CLAIMS_DIR)
    held = {
        version_number(info.path.rstrip("/").split("/")[-2])
        for info in claims.fs.get_file_info(
            pafs.FileSelector(claims.path, recursive=True, allow_not_found=True)
        )
        if info.type == pafs.FileType.File
    }
    number = next_version_number(model)
    while number in held:
        number += 1
    return number


def claim_number(model: Place, token: str) -> int:
    """Claim the next free version number of ``model`` on an object store (see the module doc).

    A won claim is never deleted (that is what makes the scheme safe); a lost
    one is deleted at once.

    Raises:
        CheckpointError: no number could be claimed in :data:`MAX_CLAIMS` tries.
    """
    for _ in range(MAX_CLAIMS):
        number = _next_free(model)
        claims = model.child(CLAIMS_DIR, f"v{number}")
        claims.write(token, b"")
        if claims.files() == [token]:
            return number
        claims.delete(token)
        time.sleep(random.uniform(0.0, CLAIM_BACKOFF_S))
    raise CheckpointError(f"could not claim a version number for {model.display()}")


def _publish_remote(
    model: Place, name: str, weights: bytes, record: dict[str, Any]
) -> ModelVersion:
    token = uuid.uuid4().hex
    staging = model.child(f".staging-{token}")
    try:
        staging.write(WEIGHTS_FILE, weights)
        staging.write(META_FILE, _meta_bytes(record, 0))
        # A version that cannot be read back is never published.
        _load(staging, None, None, staged=True)
        number = claim_number(model, token)
        target = model.child(f"v{number}")
        target.copy_in(staging, WEIGHTS_FILE)
        verify_files(record, target)  # the copies, before publishing
        target.write(META_FILE, _meta_bytes(record, number))  # publishes the version
        return load_version(target.display())
    finally:
        staging.remove()


# -- reading ------------------------------------------------------------------------------


def load_version(ref: str, *, root: str | None = None) -> ModelVersion:
    """Load and verify a version: ``"name"`` (latest), ``"name:3"`` or a directory.

    Raises:
        SpecError: a malformed reference, an unknown model or version.
        CheckpointError: a missing, truncated or modified file (named), a
            malformed meta.json field (named, with what is allowed; see
            :mod:`.meta_checks`), or weights that do not fit the recorded
            architecture.
    """
    directory, name, number = resolve_ref(ref, root)
    return _load(directory, name, number)


def _load(
    directory: Place, name: str | None, number: int | None, *, staged: bool = False
) -> ModelVersion:
    """Load the version in ``directory`` (``name``/``number``: what a reference
    named, checked against meta.json; ``staged``: a version being published,
    whose number is 0 until it is claimed)."""
    where = directory.display()
    meta, contents, configs = read_checked(directory, name, number, staged=staged)
    try:
        tensors = load_bytes(contents[WEIGHTS_FILE])
    except (SafetensorError, OSError, KeyError) as exc:
        raise CheckpointError(BAD_WEIGHTS_FILE.format(dir=where, error=exc)) from exc
    try:
        schema = FeatureSchema.from_json(json.dumps(meta["schema"]), source=where)
        architecture = meta["architecture"]
        quantization = meta.get("quantization")
        classes = [str(c) for c in meta["classes"]]
        reference = dict(meta["reference"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(BAD_META.format(dir=where, error=exc)) from exc
    postprocessing = PostProcessing.from_meta(
        meta.get(META_KEY),
        sensitive_values=schema.sensitive_values,
        n_classes=len(classes),
        where=where,
    )
    if quantization:
        from regtune.platform.registry.quantize import build_quantized_module

        module = build_quantized_module(architecture, tensors, quantization, source=where)
    else:
        module = build_version_module(architecture, tensors, source=where)
    return ModelVersion(
        name=str(meta["name"]),
        version=int(meta["version"]),
        path=where,
        meta=meta,
        schema=schema,
        classes=classes,
        reference=reference,
        module=module,
        configs=configs,
        kind=str(meta.get("kind", "single")),
        quantized=bool(quantization),
        postprocessing=postprocessing,
    )
