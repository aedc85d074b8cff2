"""``regtune serve NAME[:VERSION]``: a registered model behind HTTP on Ray Serve.

Runs until Ctrl-C or SIGTERM (systemd, docker stop, kill): either prints
"stopping", shuts Serve down and stops the Ray this command started, and
exits with status 0. ``--once`` starts the application, sends one predict
request (``--request FILE``, else a typical record built from the version's
training reference), prints the JSON answer (and writes it to ``--output
FILE``) and exits: status 0 when the answer was a 200, 1 otherwise.
``--write-config FILE`` writes the equivalent Serve config file (for
``serve run`` / ``serve deploy``) and starts nothing; the file pins what this
command would serve: the storage root resolved (``--storage``, else
``$REGTUNE_STORAGE``, else ``~/regtune_runs``) and the version (``NAME`` becomes
``NAME:N``, the latest now), so it serves the same model wherever it runs.

``--ingress direct`` (the default, when this command starts its own local
Ray) turns on Serve's direct ingress: the replica also answers on its own
port of the same host (printed as the "fast path"; ``--once`` uses it),
skipping the proxy's hop; ``--port`` stays Serve's proxy, balanced over the
replicas. ``--ingress proxy`` keeps the proxy only.

Every bad value exits with status 2 naming the option or key, the value and
what is allowed; a missing or tampered version is refused before Ray starts.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from regtune.errors import CheckpointError, RegtuneError, SpecError
from regtune.platform.cli.app import app, console, fail, out

if TYPE_CHECKING:
    from regtune.serve.settings import ServeSettings

__all__ = [
    "BAD_SET_KEY",
    "RAY_FAILED",
    "Ingress",
    "banner_lines",
    "check_versions",
    "once_request",
    "ray_failure",
    "serve",
]

PORT_BUSY = "--port {port}: {host}:{port} is already in use; choose a free port"
NO_HOST = (
    "--host {host}: cannot resolve ({error}); expected an address of this machine such as "
    "127.0.0.1 or 0.0.0.0"
)
NOT_LOCAL = (
    "--host {host}: not an address of this machine; expected one of its addresses such as "
    "127.0.0.1 or 0.0.0.0"
)
CANNOT_LISTEN = "--host {host} --port {port}: cannot listen there ({error})"
BAD_HOST = (
    "--host {host!r}: not an IP address or host name; expected e.g. 127.0.0.1 (this "
    "machine only), 0.0.0.0 (every address) or a name such as head-node.example"
)
#: One host-name label: letters, digits and inner '-' (RFC 1123), or '_', which
#: /etc/hosts and some resolvers accept; at most 63 characters.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
BAD_OUTPUT = "{option} {path}: cannot write there ({error}); expected a file in an existing folder"
#: The settings the command's own options set, by the option's name (for messages).
OPTION_OF = {
    "model": "MODEL",
    "storage": "--storage",
    "canary": "--canary",
    "canary_weight": "--canary-weight",
    "shadow": "--shadow",
    "max_batch_size": "--batch-size",
    "batch_wait_ms": "--batch-wait-ms",
    "num_replicas": "--replicas",
    "token_env": "--token-env",
}
NO_DIRECT = (
    "--ingress direct: Ray is already running here (or --address joins a cluster), so "
    "direct ingress is whatever that cluster was started with "
    "(RAY_SERVE_ENABLE_DIRECT_INGRESS=1)"
)


class Ingress(str, Enum):
    """Where HTTP requests enter: each replica's own port too, or Serve's proxy only."""

    direct = "direct"
    proxy = "proxy"


#: Ray itself failed to start or join (e.g. "The current node timed out during startup"
#: on a loaded machine): one line instead of Ray's traceback.
RAY_FAILED = (
    "{what} ({error}); try again, join a running cluster with --address (e.g. "
    "--address auto), or check the cluster with `ray status`"
)
#: Characters of Ray's own message kept in :data:`RAY_FAILED`.
RAY_ERROR_SHOWN = 200

BAD_SET = "--set {item!r}: expected key=value with a key of the serve settings"
#: A --set key that is no serve setting (the did-you-mean is spec validation's).
BAD_SET_KEY = "--set {item}: unknown serve setting {key!r}; allowed: {allowed}"
BAD_REQUEST_FILE = (
    '--request {path}: {error}; expected a JSON file holding {{"instances": [...]}} '
    "or a list of records"
)


def check_host(host: str) -> None:
    """Refuse (SpecError) a ``--host`` that is neither an IP address nor a host
    name (checked before a config file is written, where it is not resolved:
    the file may be served on another machine).

    Raises:
        SpecError: :data:`BAD_HOST`.
    """
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if not host or len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise SpecError(BAD_HOST.format(host=host))


def _check_port(host: str, port: int) -> None:
    """Refuse (SpecError) a host that does not resolve or is not this machine's, or a busy port."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise SpecError(NO_HOST.format(host=host, error=getattr(exc, "strerror", exc))) from None
    with socket.socket(family, kind, proto) as sock:
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SpecError(PORT_BUSY.format(host=host, port=port)) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise SpecError(NOT_LOCAL.format(host=host)) from None
            raise SpecError(
                CANNOT_LISTEN.format(host=host, port=port, error=exc.strerror or exc)
            ) from None


def _local_path(value: str | None) -> str | None:
    """A local path made absolute (replicas do not share this process's working
    directory); a URI, None or a registry reference that is no path, unchanged."""
    if value is None or "://" in value:
        return value
    from regtune.platform.registry.location import parse_ref

    if parse_ref(value).path is None:
        return value
    return str(Path(value).expanduser().resolve())


def _absolute(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with its local paths (storage, registry, model, canary, shadow) absolute."""
    out = dict(raw)
    for key in ("storage", "registry"):
        value = out.get(key)
        if isinstance(value, str) and value and "://" not in value:
            out[key] = str(Path(value).expanduser().resolve())
    for key in ("model", "canary", "shadow"):
        value = out.get(key)
        if isinstance(value, str) and value.strip():
            out[key] = _local_path(value)
    return out


def _writable(option: str, path: Path) -> None:
    """Refuse ``path`` before anything runs unless a file can be written there."""
    if path.is_dir():
        raise SpecError(BAD_OUTPUT.format(option=option, path=path, error="it is a folder"))
    if not path.parent.is_dir():
        error = f"folder {path.parent} does not exist"
        raise SpecError(BAD_OUTPUT.format(option=option, path=path, error=error))


def _write(option: str, path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        error = exc.strerror or exc
        raise SpecError(BAD_OUTPUT.format(option=option, path=path, error=error)) from None


def _overrides(items: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``--set`` values by key, and each key's option as written (for messages).

    Raises:
        SpecError: an item that is not key=value, or a key that is no serve
            setting (naming the allowed keys and the closest one).
    """
    from regtune.search_spaces.overrides import parse_override
    from regtune.serve.settings import ServeSettings

    allowed = sorted(ServeSettings.model_fields)
    found: dict[str, Any] = {}
    written: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(BAD_SET.format(item=item))
        if key not in allowed:
            raise SpecError(_unknown_key(item, key, allowed))
        # Spec overrides' own reading: YAML errors and alias bombs are named, not raised.
        found[key] = parse_override(f"{key}={value}")[1]
        written[key] = f"--set {item}"
    return found, written


def _unknown_key(item: str, key: str, allowed: list[str]) -> str:
    """The message for a --set key that is no setting, with spec validation's did-you-mean."""
    from regtune.errors import did_you_mean

    message = BAD_SET_KEY.format(item=item, key=key, allowed=", ".join(allowed))
    return message + did_you_mean(key, allowed)


def _known_model(model: str, storage: str | None) -> None:
    """Refuse an unknown ``NAME`` or ``NAME:N`` before torch and Ray are imported
    (a typo answers in about a second, not four); a version directory is
    checked when it is loaded.

    Raises:
        SpecError: a malformed reference, an unknown model or version.
    """
    from regtune.platform.registry.location import parse_ref, registry_root, resolve_ref

    if parse_ref(model).name is not None:
        resolve_ref(model, registry_root(storage))


def _pinned(settings: ServeSettings) -> ServeSettings:
    """``settings`` with the storage root resolved and a bare ``NAME`` pinned to
    its latest version, as a config file must hold them to serve the same model
    elsewhere (another working directory, another ``$REGTUNE_STORAGE``).

    Raises:
        SpecError: an unknown model (a typo fails before the file is written).
    """
    from regtune.platform.registry.location import parse_ref, registry_root, resolve_ref
    from regtune.platform.storage import storage_root

    update: dict[str, Any] = {}
    if settings.registry is None:
        update["storage"] = storage_root(settings.storage)
    parsed = parse_ref(settings.model)
    if parsed.name is not None:
        root = settings.registry or registry_root(update.get("storage", settings.storage))
        _, name, number = resolve_ref(settings.model, root)
        update["model"] = f"{name}:{number}"
    return settings.model_copy(update=update)


@dataclass(frozen=True)
class _Stored:
    """What a version's verified meta.json says, as far as a config file needs it."""

    name: str
    number: int
    inputs: list[str]
    classes: list[str]

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.number}"


def _stored_version(ref: str, root: str) -> _Stored:
    """The version ``ref`` names, from its meta.json after every file it lists
    (size and sha256), its fields and its post-processing were checked, as
    :func:`~regtune.platform.registry.load_version` checks them before it reads
    the weights (:func:`~regtune.platform.registry.meta_checks.read_servable`),
    without building its model (no torch).

    Raises:
        SpecError: a malformed reference, an unknown model or version.
        CheckpointError: not a version directory; a missing, truncated or
            modified file; a meta.json that records another version, has a
            malformed field or holds no usable schema.
    """
    from regtune.platform.registry.integrity import BAD_META
    from regtune.platform.registry.location import resolve_ref
    from regtune.platform.registry.meta_checks import read_servable

    directory, name, number = resolve_ref(ref, root)
    meta = read_servable(directory, name, number)
    try:
        # FeatureSchema.input_names(): numeric features first, then categorical.
        schema = meta["schema"]
        inputs = [str(f[0]) for f in schema["numeric"]] + [str(f[0]) for f in schema["categorical"]]
        if not isinstance(schema["sensitive_values"], list):  # a usable schema names its groups
            raise TypeError("schema.sensitive_values is not a list")
        classes = [str(c) for c in meta["classes"]]
        return _Stored(str(meta["name"]), int(meta["version"]), inputs, classes)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(BAD_META.format(dir=directory.display(), error=exc)) from exc


def check_versions(settings: ServeSettings) -> None:
    """Refuse what the replicas would refuse when loading the versions of
    ``settings``, without torch (``--write-config``): every version resolves, its
    files are intact and its meta.json fields are well-formed, and a canary or
    shadow is another version than the primary that reads the same inputs and
    decides between the same classes in the same order. Their
    weights are built into models (and the schema's encodings and the
    architecture parsed) only where the config file is served.

    Raises:
        SpecError: an unknown model or version; a canary or shadow that is the
            primary itself, reads other inputs or decides between other classes
            (the words of the replicas' own check).
        CheckpointError: a version directory that is missing, damaged or not
            regtune's, or a malformed meta.json field (the words of the replicas' load).
    """
    from regtune.platform.registry.location import registry_root
    from regtune.serve.settings import check_other_version

    root = settings.registry or registry_root(settings.storage)
    primary = _stored_version(settings.model, root)
    others: dict[str, _Stored] = {}
    roles: tuple[Literal["canary", "shadow"], ...] = ("canary", "shadow")
    for role in roles:
        ref = settings.ref_for(role, primary.name)
        if ref is not None:
            others[role] = _stored_version(ref, root)
    for kind, other in others.items():
        check_other_version(
            kind,
            other.ref,
            other.inputs,
            primary.ref,
            primary.inputs,
            classes=other.classes,
            primary_classes=primary.classes,
        )


def once_request(path: Path | None, typical: dict[str, Any]) -> bytes:
    """The body of the ``--once`` request: the file's, or one typical record."""
    if path is None:
        return json.dumps({"instances": [typical]}).encode()
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpecError(BAD_REQUEST_FILE.format(path=path, error=exc)) from None
    if isinstance(payload, list):
        payload = {"instances": payload}
    if not isinstance(payload, dict):
        raise SpecError(BAD_REQUEST_FILE.format(path=path, error="not an object or a list"))
    return json.dumps(payload).encode()


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or a version directory.")],
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 8000,
    canary: Annotated[
        str | None, typer.Option(help="Version that answers --canary-weight of the traffic.")
    ] = None,
    canary_weight: Annotated[
        float | None,
        typer.Option(help="Canary's share of requests (0 to 1, default 0.1). Needs --canary."),
    ] = None,
    shadow: Annotated[
        str | None, typer.Option(help="Version that sees every request but never answers.")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Storage root, a path or URI such as s3://bucket/runs "
            "(default $REGTUNE_STORAGE or ~/regtune_runs)."
        ),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster ('auto', host:port); default: local.")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Most requests per batched forward pass (1: no batching).")
    ] = 32,
    batch_wait_ms: Annotated[
        float,
        typer.Option(help="Longest wait for a batch to fill (ms, 0 to 1000; 0: take what queued)."),
    ] = 0.0,
    ingress: Annotated[
        Ingress,
        typer.Option(
            help="direct: each replica also serves HTTP on its own port (the fast path; a "
            "local Ray only); proxy: only Serve's proxy on --port."
        ),
    ] = Ingress.direct,
    replicas: Annotated[int, typer.Option(min=1, help="Serve replicas.")] = 1,
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding an optional bearer token.")
    ] = "REGTUNE_SERVE_TOKEN",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Any other serve setting: --set max_p99_ms=100 (repeatable).",
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Answer one request, print it and exit (smoke test).")
    ] = False,
    request: Annotated[
        Path | None, typer.Option(help="With --once: JSON file with the request to send.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="With --once: also write the JSON answer to this file.")
    ] = None,
    write_config: Annotated[
        Path | None, typer.Option(help="Write a Serve config file for serve run/deploy; exit.")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show Ray's and Serve's own messages.")
    ] = False,
) -> None:
    """Serve a registered model over HTTP (KServe v1) with canary, shadow and drift."""
    from regtune.platform.tune.runtime import set_verbose

    set_verbose(verbose)

    try:
        flags = {
            "model": model,
            "storage": storage,
            "canary": canary,
            "shadow": shadow,
            "max_batch_size": batch_size,
            "batch_wait_ms": batch_wait_ms,
            "num_replicas": replicas,
            "token_env": token_env,
        }
        if canary_weight is not None:
            # Given without a canary: the settings refuse it. Not given: their 0.1.
            flags["canary_weight"] = canary_weight
        # Before the serve settings (and torch) are imported, where the settings will
        # look: --set registry= names the root itself, --set storage= the storage.
        given = {k.strip(): v for k, _, v in (i.partition("=") for i in set_ or [])}
        if "registry" not in given:
            _known_model(model, given.get("storage") or storage)
        overrides, written = _overrides(set_ or [])
        from regtune.serve.settings import parse_settings

        # A bad value is named as the user wrote it: the option, or "--set key=value".
        names = {**{k: v for k, v in OPTION_OF.items() if k not in overrides}, **written}
        settings = parse_settings(_absolute({**flags, **overrides}), names)
        check_host(host)
        if write_config is not None:
            from regtune.serve.settings import config_text

            _writable("--write-config", write_config)
            settings = _pinned(settings)
            # Checked as a replica would load them (files intact, canary/shadow distinct
            # from the primary, same inputs), without torch: a config regtune would
            # refuse is never written.
            check_versions(settings)
            name = model.split(":")[0].rstrip("/").split("/")[-1]
            text = config_text(settings, host=host, port=port, app_name=f"regtune-{name}")
            _write("--write-config", write_config, text)
            console.print(f"wrote {write_config}: serve run {write_config}")
            return
        if output is not None:
            _writable("--output", output)
        from regtune.serve.example import typical_record
        from regtune.serve.service import load_service

        # Load once here: a typo'd version or a tampered file fails before Ray starts.
        service = load_service(settings)
        typical = typical_record(service.primary.schema, service.primary.version.reference)
        body = once_request(request, typical)
        _check_port(host, port)
    except (RegtuneError, ValueError) as exc:
        raise fail(exc) from None
    labels = {
        "primary": service.primary.ref,
        "canary": service.canary.ref if service.canary is not None else None,
        "shadow": service.shadow.ref if service.shadow is not None else None,
    }
    _run(settings, service.name, host, port, address, once, body, output, ingress, labels)


def _run(
    settings: ServeSettings,
    name: str,
    host: str,
    port: int,
    address: str | None,
    once: bool,
    body: bytes,
    output: Path | None = None,
    ingress: Ingress = Ingress.proxy,
    labels: dict[str, str | None] | None = None,
) -> None:
    import httpx
    import ray
    from ray import serve as ray_serve

    from regtune.platform.tune.runtime import ensure_ray
    from regtune.serve.app import build_app, replica_urls, request_direct_ingress, start_http
    from regtune.serve.settings import THROUGHPUT_ENV

    note_no_direct = False
    if ingress is Ingress.direct:
        if address is None and not ray.is_initialized():
            request_direct_ingress()
        elif os.environ.get(THROUGHPUT_ENV) != "1":
            # Asked for before this process started its Ray (the quickstart does),
            # it is on; otherwise the running Ray decides, and the user should know.
            note_no_direct = True
    started_ray = not ray.is_initialized()
    try:
        ensure_ray(address)
    except RegtuneError as exc:
        raise fail(exc) from None
    except Exception as exc:  # Ray raises a bare Exception on a start-up time-out
        if started_ray and ray.is_initialized():
            ray.shutdown()
        raise fail(SpecError(ray_failure(exc, address))) from None
    if note_no_direct:
        # Once Ray is joined: a refusal to join stays the one error line.
        console.print(NO_DIRECT)
    start_http(host, port)
    app_name = f"regtune-{name}"
    try:
        # Ray's own SIGTERM handler (set by ray.init) would exit at once: replaced,
        # so that SIGTERM takes the same way out as Ctrl-C.
        with _sigterm_as_interrupt():
            ray_serve.run(build_app(settings), name=app_name, route_prefix="/")
            base = f"http://{host}:{port}"
            direct = replica_urls(app_name) if ingress is Ingress.direct else []
            token = os.environ.get(settings.token_env)
            metrics = local_metrics_url()
            shown = banner_lines(settings, name, base, direct, labels or {}, bool(token), metrics)
            for line in shown:
                # URLs are never wrapped: a terminal's line break would cut them.
                console.print(line, soft_wrap=True, highlight=False, markup=False)
            if not once:
                console.print("Ctrl-C (or SIGTERM) to stop", highlight=False)
                while True:
                    time.sleep(1.0)
        if direct:
            base = direct[0]
        if once:
            headers = {"content-type": "application/json"}
            if token:
                headers["authorization"] = f"Bearer {token}"
            reply = httpx.post(
                f"{base}/v1/models/{name}:predict", content=body, headers=headers, timeout=60.0
            )
            if output is not None:
                try:
                    _write("--output", output, reply.text)
                except SpecError as exc:  # the folder went away while Serve started
                    raise fail(exc) from None
            try:
                out.print_json(data=reply.json())
            except ValueError:
                out.print(reply.text, highlight=False)
            if reply.status_code != 200:
                raise typer.Exit(code=1)
            return
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        ray_serve.shutdown()
        if started_ray and not once:
            # Stops the head node's processes (dashboard agent, runtime-env agent,
            # raylet, GCS) now rather than leaving them to an exit handler.
            ray.shutdown()


def ray_failure(exc: BaseException, address: str | None) -> str:
    """The one-line message for Ray failing to start (or to join ``address``):
    what failed, the first line of Ray's own message, and what to try."""
    local = address is None or address == "local"
    what = "Ray did not start" if local else f"could not join the Ray cluster at {address}"
    lines = str(exc).strip().splitlines()
    error = (lines[0] if lines else "") or type(exc).__name__
    if len(error) > RAY_ERROR_SHOWN:
        error = error[: RAY_ERROR_SHOWN - 3] + "..."
    return RAY_FAILED.format(what=what, error=error)


def banner_lines(
    settings: ServeSettings,
    name: str,
    base: str,
    direct: list[str],
    labels: dict[str, str | None],
    token_required: bool,
    metrics: str | None = None,
) -> list[str]:
    """What ``regtune serve`` prints once the application is up: the version
    served, its URLs, the canary and shadow, whether a bearer token is needed,
    and (``metrics``) the Prometheus endpoint when Ray runs on one node."""
    from regtune.serve.settings import routed_share

    primary = labels.get("primary") or name
    lines = [
        f"serving {primary} at {base}",
        f"  predict: POST {base}/v1/models/{name}:predict",
        f"  docs:    {base}/docs",
    ]
    if labels.get("canary"):
        # The share as routed (whole buckets of 0.01 %), not rounded to a percent.
        share = routed_share(settings.canary_weight)
        lines.append(f"  canary:  {labels['canary']} answers {share} of requests")
    if labels.get("shadow"):
        lines.append(f"  shadow:  {labels['shadow']} sees every request, never answers")
    if token_required:
        lines.append(
            f"  auth:    bearer token required (Authorization: Bearer ${settings.token_env})"
        )
    lines.extend(f"  fast path (a replica's own port, no proxy hop): {url}" for url in direct)
    if metrics:
        lines.append(f"  metrics: {metrics} (Prometheus text, ray_regtune_serve_*)")
    return lines


def local_metrics_url() -> str | None:
    """The Prometheus endpoint of a one-node Ray (the local one ``regtune serve``
    starts, or a one-node cluster it joined): ``http://<node>:<MetricsExportPort>/metrics``;
    None with several nodes (each serves its own replicas' metrics) or none known."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) != 1 or not nodes[0].get("MetricsExportPort"):
        return None
    node = nodes[0]
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (as Ctrl-C does);
    the previous handler is put back after. Only the main thread can set it."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
