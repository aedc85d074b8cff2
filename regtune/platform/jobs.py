"""Submit a sweep to a Ray cluster through Ray's Jobs API (``regtune submit``).

:func:`submit_sweep` does what ``ray job submit --working-dir DIR -- regtune
sweep SPEC`` does, with the checks done first on this machine::

    outcome = submit_sweep("quickstart", address="http://127.0.0.1:8265")
    outcome.exit_code   # 0 when the job SUCCEEDED, 1 when it FAILED or was STOPPED

1. The spec is loaded and validated here (``load_spec``): a bad spec fails
   before anything is sent.
2. A spec *file* travels as the job's ``working_dir`` (a temporary folder
   holding only that file, or the caller's ``working_dir``, which must hold
   it); a preset name needs no upload. The job runs in that folder.
3. NAME is ``--name``, or a new ``<spec name>-<time>-<hex>`` chosen here by
   the same rule ``regtune sweep`` uses (:mod:`regtune.platform.tune.naming`),
   so two submissions of one spec never share an experiment folder. The
   job's entrypoint is ``regtune sweep SPEC --address auto --name NAME ...``,
   its submission id ``regtune-NAME-<time>-<random>`` and its metadata ``{"regtune_sweep":
   NAME}``, so the dashboard's Jobs page shows the sweep under its name.
4. The driver's output is streamed to ``log`` until the job ends. If the
   cluster stops answering after the job was submitted,
   :class:`JobContactLost` names the job and how to follow or stop it.

The cluster must have regtune installed: ``cluster.yaml``'s setup commands
install it on every node, and a local ``ray start --head`` run from regtune's
virtualenv gives jobs that virtualenv.

Authentication: Ray's token authentication stays on. When ``RAY_AUTH_MODE``
is set, Ray's client applies it (``token``: the token from ``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``). When it is unset and the
address is on this machine (127.0.0.1, localhost, ::1), the local token is
sent, as Ray itself does for a local cluster it finds on its own; a remote
address never receives it unasked. An address is refused unless it is plain
``http(s)://HOST[:PORT][/path]`` (no ``user@``, backslash, whitespace, query
or fragment), so the host checked here is the host the request goes to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from regtune.errors import RegtuneError, SpecError, cut_echo
from regtune.platform.storage import BAD_STORAGE, NO_BUCKET, STORAGE_ENV, names_no_bucket
from regtune.platform.tune.naming import BAD_EXPERIMENT_NAME, check_name, new_experiment_name
from regtune.search_spaces import data_path_as_written, load_spec

__all__ = [
    "DEFAULT_ADDRESS",
    "LOST_CONTACT_EXIT",
    "METADATA_KEY",
    "JobContactLost",
    "JobOutcome",
    "auth_headers",
    "build_entrypoint",
    "exit_code_for",
    "parse_env_vars",
    "resolve_address",
    "run_job",
    "submission_id_for",
    "submit_sweep",
]

#: The Jobs API of a local ``ray start --head`` (and of ``ray dashboard cluster.yaml``).
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
#: Job metadata key naming the sweep (searchable in the dashboard and ``ray job list``).
METADATA_KEY = "regtune_sweep"
#: Metadata key with the spec as given (file name or preset).
SPEC_METADATA_KEY = "regtune_spec"
#: Submission ids start with this, then the sweep name.
SUBMISSION_PREFIX = "regtune"
#: Seconds between status (and, where logs cannot be tailed, log) polls.
POLL_INTERVAL_S = 0.5
#: Ray's environment variables that override any address its Jobs client is given.
ADDRESS_ENV_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
#: Ray's switch for token authentication (``token`` or ``disabled``).
AUTH_MODE_ENV = "RAY_AUTH_MODE"
#: Hosts that are this machine: the local Ray token may be sent to them.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Job statuses after which nothing changes.
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})

BAD_ADDRESS = (
    "--address must be the Ray dashboard's HTTP address, http://HOST:PORT or "
    "https://HOST:PORT (e.g. {example}): HOST a name, an IPv4 address or an IPv6 one in "
    "[brackets], PORT 1-65535, then at most a /path of letters, digits and . _ ~ - /; "
    "no user@, backslash, whitespace, query or fragment; got {address!r}"
)
ADDRESS_CONFLICT = (
    "{var}={value!r} is set and Ray's Jobs client would use it instead of --address "
    "{address!r}; unset {var} or pass the same address"
)
UNREACHABLE = (
    "no Ray Jobs API answers at {address} ({reason}). Start a local cluster with "
    "`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=token ray start --head "
    "--node-ip-address 127.0.0.1 --dashboard-host 127.0.0.1` (its API is {default}; "
    "docs/security.md), or open a "
    "tunnel to a `ray up cluster.yaml` cluster with `ray dashboard cluster.yaml`"
)
AUTH_FAILED = (
    "the Ray cluster at {address} refused the request: token authentication failed. "
    "Set RAY_AUTH_MODE=token and give the cluster's token in RAY_AUTH_TOKEN, "
    "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (`ray get-auth-token` prints the local one). "
    "Ray said: {reason}"
)
SUBMIT_FAILED = "the Ray Jobs API at {address} did not take the job: {reason}"
#: Ray's answer while a freshly started cluster's job agent is not up yet; it
#: says to try again later, so a submission retries for up to AGENT_WAIT_S.
AGENT_NOT_READY = "No available agent to submit job"
AGENT_WAIT_S = 30.0
AGENT_RETRY_EVERY_S = 1.0
REQUEST_FAILED = "the Ray Jobs API at {address} failed to answer about the job: {reason}"
WORKING_DIR_MISSING = "--working-dir {working_dir} is not a directory"
SPEC_OUTSIDE_WORKING_DIR = (
    "spec file {spec} is not inside --working-dir {working_dir}; the job runs in the "
    "working dir, so move the spec there or pass the folder that holds it"
)
LOCAL_DATA_NEEDS_WORKING_DIR = (
    "spec {spec} reads dataset.path {path!r}, a relative path that the cluster cannot "
    "see; pass --working-dir with the folder it is relative to (the job runs there)"
)
DATA_OUTSIDE_WORKING_DIR = (
    "dataset.path {path!r} resolves to {landed}, outside --working-dir {working_dir}; only "
    "that folder is uploaded, so the job could not read it: move the file into the folder "
    "(and give a path inside it), or give the absolute path it has on the cluster's nodes"
)
URI_DATA_PATH = (
    "dataset.path {path!r} is a URI; regtune reads the data file from the disk of the "
    "machine each trial runs on, not from object storage: copy it onto the cluster's nodes "
    "and give that absolute path, or put it in --working-dir and give a path relative to "
    "it (nothing was sent)"
)
DATA_ON_CLUSTER = (
    "dataset.path {path} is absolute: the job reads it on the cluster, where each node "
    "that runs a trial must have it (not checked here; a copy on this machine is not sent)"
)
RELATIVE_STORAGE = (
    "{option} {storage!r} is relative; the job runs in a temporary folder on the cluster "
    "and its results would be lost; give an absolute path every node can write, or an "
    "s3:// / gs:// URI"
)
BAD_SWEEP_NAME = BAD_EXPERIMENT_NAME
#: A bad ``--env`` names its key, never its value (which may be a secret).
BAD_ENV_VAR = (
    "--env {key!r}=...: expected KEY=VALUE with KEY made of letters, digits and '_', "
    "not starting with a digit (the value is not shown)"
)
#: An ``--env`` without ``=`` is not shown at all: it may be a secret given without its key.
ENV_VAR_WITHOUT_VALUE = (
    "--env number {number} ({length} characters, not shown) has no '=': expected "
    "KEY=VALUE (a bare KEY does not pass this machine's value)"
)
DETACHED = (
    "stopped following job {job_id}; it keeps running on the cluster. "
    "Logs: `ray job logs --follow {job_id} --address {address}`; "
    "stop it: `ray job stop {job_id} --address {address}`"
)
LOST_CONTACT = (
    "job {job_id} was submitted and may still be running; lost contact while following it "
    "({reason}). Logs: `ray job logs --follow {job_id} --address {address}`; "
    "stop: `ray job stop {job_id} --address {address}`"
)
#: ``regtune submit``'s exit status when the job was submitted but could not
#: be followed (2 means nothing was submitted; 0 and 1 are the job's own end).
LOST_CONTACT_EXIT = 3

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: The addresses taken (:data:`BAD_ADDRESS`): none holds a character on which
#: urllib (which decides here whether the host is this machine) and urllib3
#: (which requests, hence Ray's client, connects with) could read different
#: hosts, such as the backslash in ``http://evil:1\@127.0.0.1:1``.
_ADDRESS = re.compile(
    r"(?i:https?)://(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?"
)
#: A password in a (refused) address's user info, hidden when the address is echoed:
#: what lies between ``://USER:`` and the last ``@``, unless it is a port followed by
#: what makes such an address wrong (``HOST:PORT\@``, ``HOST:PORT#@``).
_PASSWORD = re.compile(r"(://[^/?#@:\\]*:)(?![0-9\\?#\s]*@)[^@]*@")


@dataclass(frozen=True)
class JobOutcome:
    """What :func:`run_job` and :func:`submit_sweep` return.

    ``status`` is Ray's job status (PENDING, RUNNING, SUCCEEDED, FAILED or
    STOPPED). ``exit_code`` is what ``regtune submit`` exits with: 0 when the
    job SUCCEEDED (or, not followed, was accepted), 1 when it FAILED or was
    STOPPED (it exits 2 when nothing was submitted and
    :data:`LOST_CONTACT_EXIT` on :class:`JobContactLost`). ``message`` is
    Ray's status message, when it gives one.
    """

    job_id: str
    status: str
    exit_code: int
    message: str | None = None


class JobContactLost(RegtuneError):
    """The job was submitted, then the cluster stopped answering about it
    (a dropped connection, a refused or failed request): it may still be
    running. ``job_id`` names it; the message says how to follow or stop it
    with Ray's CLI. ``regtune submit`` exits with :data:`LOST_CONTACT_EXIT`.
    """

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


def exit_code_for(status: str) -> int:
    """0 for SUCCEEDED and for a job still PENDING or RUNNING, 1 for FAILED or STOPPED."""
    return 1 if status in TERMINAL_STATUSES and status != "SUCCEEDED" else 0


def resolve_address(address: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The Jobs API address to use: ``address``, else ``$RAY_API_SERVER_ADDRESS``,
    else ``$RAY_ADDRESS``, else :data:`DEFAULT_ADDRESS`; trailing ``/`` dropped.

    Ray's client lets those variables override any address it is given, so an
    explicit address that differs from one of them is refused rather than
    silently replaced.

    Raises:
        SpecError: not an ``http(s)://HOST:PORT`` URL, or a conflicting
            variable is set.
    """
    env = os.environ if environ is None else environ
    chosen = address
    for var in ADDRESS_ENV_VARS:
        value = env.get(var)
        if not value:
            continue
        if address is not None and value.rstrip("/") != address.rstrip("/"):
            raise SpecError(ADDRESS_CONFLICT.format(var=var, value=value, address=address))
        chosen = chosen or value
        # The first variable set is the one Ray reads.
        break
    chosen = (chosen or DEFAULT_ADDRESS).rstrip("/")
    if not _plain_address(chosen):
        shown = cut_echo(_PASSWORD.sub(r"\1***@", chosen))
        raise SpecError(BAD_ADDRESS.format(example=DEFAULT_ADDRESS, address=shown))
    return chosen


def _plain_address(address: str) -> bool:
    """Whether ``address`` is one :data:`_ADDRESS` takes, with a port in range."""
    if _ADDRESS.fullmatch(address) is None:
        return False
    try:
        port = urlsplit(address).port
    except ValueError:
        return False
    return port != 0


def _is_this_machine(address: str) -> bool:
    """Whether ``address`` is a plain address (:data:`_ADDRESS`) whose host, as
    urllib and as urllib3 (the parser the HTTP request uses) both read it, is
    one of :data:`LOOPBACK_HOSTS`."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    if not _plain_address(address):
        return False
    try:
        parsed = parse_url(address)
    except LocationParseError:
        return False
    if parsed.auth is not None or parsed.host is None:
        return False
    connected = parsed.host.lower().removeprefix("[").removesuffix("]")
    return connected == urlsplit(address).hostname and connected in LOOPBACK_HOSTS


def auth_headers(address: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """HTTP headers carrying the local Ray token to ``address``, or none.

    Empty when ``RAY_AUTH_MODE`` is set (Ray's client then applies that mode
    itself), when ``address`` is not on this machine (or is not a plain
    ``http(s)://HOST[:PORT][/path]`` address, whose host two URL parsers
    could read differently), or when there is no local token. Otherwise
    ``{"authorization": "Bearer <token>"}`` with the token Ray's own loader
    finds (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``).
    """
    env = os.environ if environ is None else environ
    if env.get(AUTH_MODE_ENV) is not None:
        return {}
    if not _is_this_machine(address):
        return {}
    from regtune.platform.tune.ray_private import auth_token_header

    return auth_token_header()


#: The job's log file Ray writes on the head node, named by the submission id, and
#: how a refused --name names it.
LOG_FILE = "job-driver-{id}.log"
LOG_WHERE = "the job's log file (job-driver-regtune-NAME-<time>-<hex>.log)"


def submission_id_for(name: str) -> str:
    """A new, unique submission id that starts with the sweep's name:
    ``regtune-NAME-YYYYmmdd-HHMMSS-<6 hex>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{SUBMISSION_PREFIX}-{name}-{stamp}-{secrets.token_hex(3)}"


def build_entrypoint(
    spec: str,
    *,
    name: str | None,
    overrides: Sequence[str] = (),
    storage: str | None = None,
    resume: bool = False,
    extra_args: Sequence[str] = (),
) -> str:
    """The job's shell command: ``regtune sweep SPEC --address auto --name NAME``
    (no ``--name`` when ``name`` is None), then ``--set`` per override,
    ``--storage``, ``--resume`` and ``extra_args``, each quoted."""
    argv = ["regtune", "sweep", spec, "--address", "auto"]
    if name is not None:
        argv += ["--name", name]
    for override in overrides:
        argv += ["--set", override]
    if storage is not None:
        argv += ["--storage", storage]
    if resume:
        argv.append("--resume")
    argv += list(extra_args)
    return shlex.join(argv)


def parse_env_vars(items: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` texts (the CLI's repeatable ``--env``) as a mapping.

    Raises:
        SpecError: an item without ``=`` or with a key that is not a shell name;
            the message never shows a value.
    """
    out: dict[str, str] = {}
    for number, text in enumerate(items, start=1):
        key, sep, value = text.partition("=")
        if not sep:
            raise SpecError(ENV_VAR_WITHOUT_VALUE.format(number=number, length=len(text)))
        if not _ENV_KEY.fullmatch(key):
            raise SpecError(BAD_ENV_VAR.format(key=cut_echo(key)))
        out[key] = value
    return out


def submit_sweep(
    spec: str,
    *,
    address: str | None = None,
    name: str | None = None,
    storage: str | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    extra_args: Sequence[str] = (),
    working_dir: Path | None = None,
    env_vars: Mapping[str, str] | None = None,
    follow: bool = True,
    log: Callable[[str], None] = print,
) -> JobOutcome:
    """Submit ``regtune sweep SPEC`` as a Ray job and (by default) follow it to the end.

    Args:
        spec: a sweep YAML file or a preset name, as for ``regtune sweep``.
        address: the cluster's Jobs API, ``http(s)://HOST:PORT``; see
            :func:`resolve_address` for the default.
        name: experiment name (default: a new ``<spec name>-<time>-<hex>``;
            with ``resume``, the newest experiment of the spec on the
            cluster's storage); names the job too.
        resume: continue the experiment (``regtune sweep --resume``).
        storage: results root on the cluster (``regtune sweep --storage``):
            an absolute path every node can write, or a URI; a relative one
            (here, or as ``REGTUNE_STORAGE`` in ``env_vars``) is refused.
        overrides: ``KEY.PATH=VALUE`` texts, validated here and passed as ``--set``.
        extra_args: more ``regtune sweep`` arguments, passed as they are.
        working_dir: a folder to upload as the job's working dir (it must hold
            a spec file, and any relative ``dataset.path``); default: a
            temporary folder with the spec file only, or nothing for a preset.
            Files matched by its ``.gitignore`` are not uploaded.
        env_vars: environment variables for the job's processes.
        follow: stream the job's output to ``log`` and wait for its end;
            otherwise return once Ray has accepted it.
        log: receives each line of output (and a few lines about the job).

    Raises:
        SpecError: the spec, an override, the name, the address, the
            storage or the working dir is invalid; nothing was sent.
        RegtuneError: the cluster cannot be reached, refuses the token, or
            does not accept the job.
    """
    # Everything that can be checked here is, before the cluster is contacted.
    resolved = resolve_address(address)
    spec_file = Path(spec) if Path(spec).is_file() else None
    # dataset.path as written (load_spec makes it absolute on this machine, which the
    # cluster need not share). A URI is refused first, with the job's own advice:
    # load_spec would refuse it too, telling to copy the file onto this machine,
    # where the job does not read it.
    data_path = data_path_as_written(spec, overrides)
    if data_path is not None and "://" in data_path:
        raise SpecError(URI_DATA_PATH.format(path=data_path))
    data = _locate_data(spec, spec_file, overrides, working_dir, data_path)
    # One load validates the spec and, only where the job reads what this machine
    # uploads, the data file as the job will find it (data.check points the spec's
    # own check at it). A resume continues a sweep that ran: its spec is read as
    # `regtune sweep --resume` reads it on the cluster (rules added since for new
    # input do not refuse it).
    loaded = load_spec(
        spec,
        overrides if data.check is None else data.check,
        check_data=data.check is not None,
        stored=resume,
    )
    # Resuming without a name: the cluster's newest experiment of the spec,
    # found there by the same rule (the job is labelled with the spec's name).
    sweep_name: str | None
    if name is not None:
        # Ray names the job's log file after the submission id (job-driver-<id>.log):
        # the longest file name made of the name, so the one the limit counts.
        sweep_name = check_name(
            name, added=len(LOG_FILE.format(id=submission_id_for(""))), where=LOG_WHERE
        )
    else:
        sweep_name = None if resume else new_experiment_name(loaded.name)
    if working_dir is not None and not working_dir.is_dir():
        raise SpecError(WORKING_DIR_MISSING.format(working_dir=working_dir))
    if data.refusal is not None:
        raise SpecError(data.refusal)
    _check_storage_is_kept(storage, env_vars or {})
    if data.note is not None:
        log(data.note)

    with _job_files(spec, spec_file, working_dir) as (job_spec, upload_dir):
        entrypoint = build_entrypoint(
            job_spec,
            name=sweep_name,
            overrides=overrides,
            storage=storage,
            resume=resume,
            extra_args=extra_args,
        )
        runtime_env: dict[str, Any] = {}
        if upload_dir is not None:
            runtime_env["working_dir"] = str(upload_dir)
        if env_vars:
            runtime_env["env_vars"] = dict(env_vars)
        return run_job(
            entrypoint,
            address=resolved,
            name=sweep_name or loaded.name,
            runtime_env=runtime_env,
            metadata={SPEC_METADATA_KEY: job_spec},
            follow=follow,
            log=log,
        )


def run_job(
    entrypoint: str,
    *,
    address: str | None = None,
    name: str,
    runtime_env: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
    follow: bool = True,
    log: Callable[[str], None] = print,
) -> JobOutcome:
    """Submit any shell ``entrypoint`` as a Ray job named after ``name`` and
    (by default) follow it; :func:`submit_sweep` uses it for ``regtune sweep``.

    The submission id is :func:`submission_id_for` ``(name)`` and the job's
    metadata holds ``{METADATA_KEY: name}`` plus ``metadata``. ``runtime_env``
    is Ray's (``working_dir``, ``env_vars``, ``pip``, ...).

    Raises:
        SpecError: a bad address.
        JobContactLost: the job was submitted, then the cluster stopped
            answering about it (it may still be running).
        RegtuneError: the cluster cannot be reached, refuses the token, or
            does not accept the job (nothing was submitted).
    """
    resolved = resolve_address(address)
    client = _connect(resolved)
    job_id = _submit(
        client,
        resolved,
        entrypoint=entrypoint,
        submission_id=submission_id_for(name),
        runtime_env=dict(runtime_env or {}),
        metadata={METADATA_KEY: name, **(metadata or {})},
    )
    log(f"submitted job {job_id} to {resolved}: {entrypoint}")
    log(f"dashboard: {resolved}/#/jobs")
    if not follow:
        with _submitted(job_id, resolved):
            status = str(_call(resolved, client.get_job_status, job_id))
        return JobOutcome(job_id=job_id, status=status, exit_code=exit_code_for(status))
    try:
        with _submitted(job_id, resolved):
            _follow_logs(client, resolved, job_id, log)
            info = _wait_until_done(client, resolved, job_id)
    except KeyboardInterrupt:
        log(DETACHED.format(job_id=job_id, address=resolved))
        raise
    status = str(info.status)
    log(f"job {job_id} {status}" + (f": {info.message}" if info.message else ""))
    return JobOutcome(
        job_id=job_id, status=status, exit_code=exit_code_for(status), message=info.message
    )


@contextlib.contextmanager
def _submitted(job_id: str, address: str) -> Iterator[None]:
    """Once the job is submitted, a failed request about it becomes
    :class:`JobContactLost` (the job may be running; not "never submitted")."""
    try:
        yield
    except RegtuneError as exc:
        # _call's message says how to start a cluster; Ray's own error is the reason.
        reason = exc.__cause__ if exc.__cause__ is not None else exc
        message = LOST_CONTACT.format(job_id=job_id, reason=reason, address=address)
        raise JobContactLost(message, job_id=job_id) from exc


@dataclass(frozen=True)
class _DataPlan:
    """Where the job reads ``dataset.path`` (:func:`_locate_data`): ``refusal``,
    a :class:`SpecError` message; ``note``, a line to show; ``check``, the
    overrides under which the spec's own data-file check reads the file the
    job will read (None: the file is not checked here)."""

    refusal: str | None = None
    note: str | None = None
    check: list[str] | None = None


def _locate_data(
    spec: str,
    spec_file: Path | None,
    overrides: Sequence[str],
    working_dir: Path | None,
    path: str | None,
) -> _DataPlan:
    """Where the job will read ``dataset.path``, worked out from the path alone.

    ``path`` is the path as written (:func:`~regtune.search_spaces.data_path_as_written`:
    the last ``--set`` giving it, else the spec file's value; not a URI, refused before):

    - an absolute path (or ``~/...``, the cluster user's home) is read on
      the cluster: not looked for here, said so in ``note``;
    - a relative one travels in ``working_dir`` (refused without one): it
      must land inside it (relative to the spec file's folder, or for
      ``--set`` to the job's working directory, the folder's root), and the
      file there is checked as ``regtune sweep`` checks it, by loading the
      spec under ``check`` (a ``--set`` path is pointed at the folder's root,
      not this machine's working directory).
    """
    if path is None:
        return _DataPlan()
    if path.startswith("~") or Path(path).is_absolute():
        return _DataPlan(note=DATA_ON_CLUSTER.format(path=path))
    if working_dir is None:
        return _DataPlan(refusal=LOCAL_DATA_NEEDS_WORKING_DIR.format(spec=spec, path=path))
    # Whether a --set gave the path (it is then relative to the folder's root).
    from_set = any(o.partition("=")[0].strip() in ("dataset", "dataset.path") for o in overrides)
    base = working_dir if from_set or spec_file is None else spec_file.parent
    landed = Path(os.path.normpath(os.path.abspath(base / path)))
    root = Path(os.path.normpath(os.path.abspath(working_dir)))
    if not landed.is_relative_to(root):
        message = DATA_OUTSIDE_WORKING_DIR.format(path=path, landed=landed, working_dir=working_dir)
        return _DataPlan(refusal=message)
    if not working_dir.is_dir():
        return _DataPlan()  # refused as WORKING_DIR_MISSING
    if from_set:
        return _DataPlan(check=[*overrides, f"dataset.path={json.dumps(str(landed))}"])
    return _DataPlan(check=list(overrides))


def _check_storage_is_kept(storage: str | None, env_vars: Mapping[str, str]) -> None:
    """Refuse a relative results root (the job's working directory is a
    temporary folder of Ray's on the cluster, deleted with the job) and an
    object-store URI naming no bucket, before the cluster is contacted.

    The root the job's ``regtune sweep`` would use is checked: ``storage``,
    else the ``REGTUNE_STORAGE`` passed with ``--env`` (this machine's own
    environment does not travel with the job). ``~/...`` is kept: it is the
    cluster user's home there.
    """
    option, value = "--storage", storage
    if not value:
        option, value = f"--env {STORAGE_ENV}", env_vars.get(STORAGE_ENV)
    if value and "://" not in value and not Path(value).expanduser().is_absolute():
        raise SpecError(RELATIVE_STORAGE.format(option=option, storage=value))
    if value and names_no_bucket(value):
        raise SpecError(BAD_STORAGE.format(option=option, root=value, reason=NO_BUCKET))


@contextlib.contextmanager
def _job_files(
    spec: str, spec_file: Path | None, working_dir: Path | None
) -> Iterator[tuple[str, Path | None]]:
    """(the spec as the job names it, the folder to upload or None)."""
    if working_dir is not None:
        if spec_file is None:
            yield spec, working_dir
            return
        try:
            relative = spec_file.resolve().relative_to(working_dir.resolve())
        except ValueError as exc:
            message = SPEC_OUTSIDE_WORKING_DIR.format(spec=spec_file, working_dir=working_dir)
            raise SpecError(message) from exc
        yield str(PurePosixPath(*relative.parts)), working_dir
        return
    if spec_file is None:
        yield spec, None
        return
    with tempfile.TemporaryDirectory(prefix="regtune-job-") as tmp:
        shutil.copy2(spec_file, Path(tmp) / spec_file.name)
        yield spec_file.name, Path(tmp)


def _connect(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    return _call(address, JobSubmissionClient, address, headers=auth_headers(address))


def _submit(client: Any, address: str, **kwargs: Any) -> str:
    """``client.submit_job(**kwargs)``, retried while Ray says no job agent is up yet."""

    def submit_once_an_agent_is_up() -> Any:
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                return client.submit_job(**kwargs)
            except RuntimeError as exc:
                if AGENT_NOT_READY not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(AGENT_RETRY_EVERY_S)

    return str(_call(address, submit_once_an_agent_is_up, failed=SUBMIT_FAILED))


def _call(
    address: str,
    fn: Callable[..., Any],
    *args: Any,
    failed: str = REQUEST_FAILED,
    **kwargs: Any,
) -> Any:
    """Call a Jobs API method, turning Ray's errors into regtune's."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        return fn(*args, **kwargs)
    except AuthenticationError as exc:
        raise RegtuneError(AUTH_FAILED.format(address=address, reason=exc)) from exc
    # Ray raises the builtin ConnectionError while connecting, and lets
    # requests' own errors through on later calls.
    except (ConnectionError, requests.exceptions.RequestException) as exc:
        message = UNREACHABLE.format(address=address, reason=exc, default=DEFAULT_ADDRESS)
        raise RegtuneError(message) from exc
    except RuntimeError as exc:
        raise RegtuneError(failed.format(address=address, reason=exc)) from exc


class _LineWriter:
    """Passes text chunks to ``log`` one whole line at a time; counts the
    characters taken, so a poll can carry on where a tail stopped."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.seen = 0
        self._partial = ""

    def write(self, chunk: str) -> None:
        self.seen += len(chunk)
        *lines, self._partial = (self._partial + chunk).split("\n")
        for line in lines:
            self.log(line)

    def close(self) -> None:
        if self._partial:
            self.log(self._partial)
            self._partial = ""


def _follow_logs(client: Any, address: str, job_id: str, log: Callable[[str], None]) -> None:
    """Pass the driver's output to ``log``, line by line, until the job ends."""
    writer = _LineWriter(log)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_tail_until_done(client, address, job_id, writer))
    # After the tail (or, inside a caller's event loop, instead of it).
    _poll_logs(client, address, job_id, writer)
    writer.close()


async def _tail_until_done(client: Any, address: str, job_id: str, writer: _LineWriter) -> None:
    """Stream output through Ray's websocket tail while the job runs.

    Ray's tail reaches the end of a job seconds after it happened, so it is
    cancelled as soon as the job's status is final; :func:`_poll_logs` then
    fetches what it had not delivered. A tail that breaks is left to the poll.
    """
    import aiohttp

    tail = asyncio.ensure_future(_tail(client, job_id, writer))
    try:
        while not tail.done():
            status = await asyncio.to_thread(_call, address, client.get_job_status, job_id)
            if str(status) in TERMINAL_STATUSES:
                return
            await asyncio.wait({tail}, timeout=POLL_INTERVAL_S)
    finally:
        tail.cancel()
        with contextlib.suppress(
            asyncio.CancelledError, RuntimeError, OSError, aiohttp.ClientError
        ):
            await tail


async def _tail(client: Any, job_id: str, writer: _LineWriter) -> None:
    async for chunk in client.tail_job_logs(job_id):
        writer.write(chunk)


def _poll_logs(client: Any, address: str, job_id: str, writer: _LineWriter) -> None:
    """Write the output past ``writer.seen`` until the job's status is final."""
    while True:
        status = str(_call(address, client.get_job_status, job_id))
        logs = str(_call(address, client.get_job_logs, job_id))
        writer.write(logs[writer.seen :])
        if status in TERMINAL_STATUSES:
            return
        time.sleep(POLL_INTERVAL_S)


def _wait_until_done(client: Any, address: str, job_id: str) -> Any:
    """The job's final JobInfo (its status can lag its last log line)."""
    while True:
        info = _call(address, client.get_job_info, job_id)
        if str(info.status) in TERMINAL_STATUSES:
            return info
        time.sleep(POLL_INTERVAL_S)
