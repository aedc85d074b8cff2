"""Everything one served model can be told, validated in one place.

:class:`ServeSettings` is the ``args`` mapping of the Serve application
builder (``regtune.serve.app:build_app`` in a ``serve run`` / ``serve deploy``
config file) and what ``regtune serve`` fills from its options. Unknown keys
and bad values are refused with the key, the value and what is allowed;
:func:`config_text` writes them as such a config file.

This module is the one definition of the serving defaults and words that
both the torch-free ``regtune serve --write-config`` and the replicas use: the
drift window and limit (:mod:`.drift` imports them), the request caps
(:mod:`.protocol`), the canary/shadow refusals (:mod:`.service`), Serve's
throughput switch and the config file's header (:mod:`.app`). It imports
neither torch nor Ray; :meth:`ServeSettings.limits` /
:meth:`ServeSettings.rollout_limits` import their classes when called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from regtune.errors import Problem, SpecError
from regtune.trainables.config import validation_problems

if TYPE_CHECKING:
    from regtune.serve.protocol import Limits
    from regtune.serve.rollout import RolloutLimits

__all__ = [
    "BUCKETS",
    "CONFIG_HEADER",
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_FEEDBACK_RECORDS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_DISAGREEMENT",
    "DEFAULT_MAX_ERROR_RATE",
    "DEFAULT_MAX_INSTANCES",
    "DEFAULT_MAX_P99_MS",
    "DEFAULT_MIN_REQUESTS",
    "DEFAULT_ROLLOUT_WINDOW",
    "DEFAULT_TOKEN_ENV",
    "DEFAULT_WINDOW",
    "DRIFT_INDEX_LIMIT",
    "MIN_WINDOW",
    "OTHER_CLASSES",
    "OTHER_INPUTS",
    "SAME_VERSION",
    "THROUGHPUT_ENV",
    "ServeSettings",
    "check_other_version",
    "config_text",
    "parse_settings",
    "routed_buckets",
    "routed_share",
]

#: Environment variable holding the optional bearer token.
DEFAULT_TOKEN_ENV = "REGTUNE_SERVE_TOKEN"

#: A canary or shadow that is the primary itself (raised when the versions are loaded).
SAME_VERSION = "{role} is the primary version itself ({ref}); choose another version"
#: A canary or shadow that reads other inputs than the primary (raised when the
#: versions are loaded, and by ``regtune serve --write-config`` before it writes).
OTHER_INPUTS = (
    "{role} {ref} reads inputs {theirs}, the primary {primary} reads {ours}; "
    "a {role} must take the same records as the primary"
)

#: A canary or shadow deciding between other classes than the primary's, or the same
#: ones in another order (raised when the versions are loaded, and by ``regtune serve
#: --write-config``; names are compared by canonical value, ids by position).
OTHER_CLASSES = (
    "{role} {ref} decides between classes {theirs}, the primary {primary} between {ours}; "
    "a {role} must decide between the same classes"
)


def check_other_version(
    role: str,
    ref: str,
    inputs: Sequence[str],
    primary_ref: str,
    primary_inputs: Sequence[str],
    *,
    classes: Sequence[str],
    primary_classes: Sequence[str],
) -> None:
    """Refuse a canary or shadow (``role``; ``ref`` ``name:version``) that is the
    primary itself, reads other inputs (feature names, in order) or decides
    between other classes (class names by canonical value, in order: ids are
    read by position): the replicas' check when they load the versions, and
    ``--write-config``'s before it writes.

    Raises:
        SpecError: :data:`SAME_VERSION`, :data:`OTHER_INPUTS` or :data:`OTHER_CLASSES`.
    """
    if ref == primary_ref:
        raise SpecError(SAME_VERSION.format(role=role, ref=ref))
    # numpy/pandas (not torch), imported only when there is another version to check.
    from regtune.trainables.values import same_names

    def same_inputs(theirs: Sequence[str], ours: Sequence[str]) -> bool:
        return list(theirs) == list(ours)

    checks = (
        (OTHER_INPUTS, inputs, primary_inputs, same_inputs),
        (OTHER_CLASSES, classes, primary_classes, same_names),
    )
    for message, theirs, ours, same in checks:
        if not same(theirs, ours):
            raise SpecError(
                message.format(
                    role=role, ref=ref, theirs=list(theirs), primary=primary_ref, ours=list(ours)
                )
            )


#: Canary routing (:mod:`.rollout`): a request id's crc32 picks one of BUCKETS buckets,
#: and the first ``round(canary_weight * BUCKETS)`` go to the canary (0.01 % steps).
BUCKETS = 10_000
#: A canary weight with no canary: nothing would use it.
NO_CANARY = (
    "canary_weight ({weight}) is set but there is no canary: name the version that answers "
    "that share with --canary (canary: in a config file), or leave the weight out"
)
#: A positive canary weight that rounds to no bucket: the canary would get no request.
TOO_SMALL = (
    "canary_weight ({weight}) routes no request to the canary: weights go in steps of "
    "{step:g} (one of 10,000 buckets); use 0 (no traffic) or at least {step:g}"
)


def routed_buckets(weight: float) -> int:
    """How many of the :data:`BUCKETS` buckets a canary at ``weight`` answers."""
    return round(weight * BUCKETS)


def routed_share(weight: float) -> str:
    """The share of requests a canary at ``weight`` answers, as routed: ``"0.4%"``."""
    return f"{routed_buckets(weight) * 100 / BUCKETS:g}%"


#: Drift (:mod:`.drift`): the window of served records compared with the reference,
#: the fewest records given a verdict (PSI's sampling bias is about (bins - 1) / n),
#: and the mean PSI over features at which a window counts as drifting.
DEFAULT_WINDOW = 1000
MIN_WINDOW = 100
DRIFT_INDEX_LIMIT = 0.1
#: Request caps (:class:`~regtune.serve.protocol.Limits`): one body's bytes (about
#: 2,000 Adult records) and records per request.
DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_MAX_INSTANCES = 1024
#: Seconds a request's whole body may take to arrive once its headers have (a
#: 1 MiB body at about 100 KB/s): a client that stalls mid-body is answered 408
#: and its request slot freed (:mod:`.http`).
DEFAULT_BODY_TIMEOUT_S = 10.0
#: Canary rollback limits (:class:`~regtune.serve.rollout.RolloutLimits`): the error
#: rate, p99 latency and share of labels differing from the primary's at which a canary
#: rolls back, over the last ``window`` requests once ``min_requests`` have been seen.
DEFAULT_MAX_ERROR_RATE = 0.05
DEFAULT_MAX_P99_MS = 250.0
DEFAULT_MAX_DISAGREEMENT = 0.25
DEFAULT_MIN_REQUESTS = 20
DEFAULT_ROLLOUT_WINDOW = 200
#: Predictions kept for later feedback labels (:class:`~regtune.serve.feedback.FeedbackTracker`).
DEFAULT_FEEDBACK_RECORDS = 200_000
#: Ray Serve's throughput-optimized mode: direct ingress, the app on the replica's
#: main event loop, buffered request logs, gRPC between deployments. Read from the
#: environment where Ray starts (:func:`regtune.serve.app.request_direct_ingress`).
THROUGHPUT_ENV = "RAY_SERVE_THROUGHPUT_OPTIMIZED"
#: What a written Serve config file starts with (:func:`config_text`; direct
#: ingress is not a config setting).
CONFIG_HEADER = (
    "# regtune serve config (serve run / serve deploy). Direct ingress (regtune serve's\n"
    "# --ingress direct, each replica on its own port) is not a config setting: put\n"
    f"# {THROUGHPUT_ENV}=1 in the environment where Ray starts (ray start, or serve\n"
    "# run when it starts Ray); without it requests go through Serve's proxy.\n"
)


class ServeSettings(BaseModel):
    """How to serve one registered model; see the module docstring.

    ``model`` is ``NAME``, ``NAME:VERSION`` or a version directory;
    ``canary`` / ``shadow`` are version numbers of the same model (or full
    refs). The registry is ``registry`` if given, else ``<storage>/registry``.
    """

    # Finite numbers only: a canary weight or wait of nan/inf is named as such.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model: str = Field(min_length=1)
    storage: str | None = None
    registry: str | None = None
    canary: str | None = None
    canary_weight: float = Field(0.1, ge=0.0, le=1.0)
    shadow: str | None = None
    # Batching of the primary's forward passes (max_batch_size 1: no batching). No
    # wait by default: a batch is what queued during the previous forward pass, and
    # a lone request is never held (benchmarks/serve_load.py measured the choices).
    max_batch_size: int = Field(32, ge=1, le=4096)
    batch_wait_ms: float = Field(0.0, ge=0.0, le=1000.0)
    # Request caps and the unseen-category rule.
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=64)
    body_timeout_s: float = Field(DEFAULT_BODY_TIMEOUT_S, gt=0.0, le=3600.0)
    max_instances: int = Field(DEFAULT_MAX_INSTANCES, ge=1)
    unknown_categories: Literal["accept", "reject"] = "accept"
    # Canary rollback limits.
    max_error_rate: float = Field(DEFAULT_MAX_ERROR_RATE, ge=0.0, le=1.0)
    max_p99_ms: float = Field(DEFAULT_MAX_P99_MS, gt=0.0)
    max_disagreement: float = Field(DEFAULT_MAX_DISAGREEMENT, ge=0.0, le=1.0)
    min_requests: int = Field(DEFAULT_MIN_REQUESTS, ge=1)
    rollout_window: int = Field(DEFAULT_ROLLOUT_WINDOW, ge=1)
    # Drift monitoring.
    drift_window: int = Field(DEFAULT_WINDOW, ge=10)
    drift_min_window: int = Field(MIN_WINDOW, ge=1)
    drift_index_limit: float = Field(DRIFT_INDEX_LIMIT, gt=0.0)
    # Feedback: predictions (records) kept for later labels, over all kept requests;
    # the memory bound (4 bytes per class + 8 a record).
    feedback_records: int = Field(DEFAULT_FEEDBACK_RECORDS, ge=1, le=10_000_000)
    # Security and resources.
    token_env: str = Field(DEFAULT_TOKEN_ENV, min_length=1)
    torch_threads: int | None = Field(1, ge=1)
    num_replicas: int = Field(1, ge=1)
    num_cpus: float = Field(1.0, ge=0.0)
    max_ongoing_requests: int = Field(64, ge=1)
    # Serve's per-request access log line (off: it costs each request a log write).
    access_log: bool = False

    @field_validator("canary", "shadow", mode="before")
    @classmethod
    def _version_number(cls, value: Any) -> Any:
        # YAML (a config file, --set canary=2) reads a bare version number as an int.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServeSettings:
        if self.canary is None and "canary_weight" in self.model_fields_set:
            raise ValueError(NO_CANARY.format(weight=self.canary_weight))
        if (
            self.canary is not None
            and self.canary_weight > 0
            and not routed_buckets(self.canary_weight)
        ):
            raise ValueError(TOO_SMALL.format(weight=self.canary_weight, step=1 / BUCKETS))
        if self.min_requests > self.rollout_window:
            raise ValueError(
                f"min_requests ({self.min_requests}) must not exceed rollout_window "
                f"({self.rollout_window})"
            )
        if self.drift_min_window > self.drift_window:
            raise ValueError(
                f"drift_min_window ({self.drift_min_window}) must not exceed drift_window "
                f"({self.drift_window})"
            )
        return self

    def limits(self) -> Limits:
        """The request caps."""
        from regtune.serve.protocol import Limits

        return Limits(self.max_body_bytes, self.max_instances, self.unknown_categories)

    def rollout_limits(self) -> RolloutLimits:
        """The canary's rollback limits."""
        from regtune.serve.rollout import RolloutLimits

        return RolloutLimits(
            max_error_rate=self.max_error_rate,
            max_p99_ms=self.max_p99_ms,
            max_disagreement=self.max_disagreement,
            min_requests=self.min_requests,
            window=self.rollout_window,
        )

    def ref_for(self, role: Literal["canary", "shadow"], name: str) -> str | None:
        """The registry ref of the canary or shadow (a bare number means ``name:N``)."""
        value = self.canary if role == "canary" else self.shadow
        if value is None:
            return None
        return f"{name}:{value}" if value.isdigit() else value


def _unknown(key: str) -> str:
    """An unknown key's message: the allowed keys and the closest one (spec validation's rule)."""
    from regtune.errors import did_you_mean, shown
    from regtune.search_spaces.validate import UNKNOWN_KEY

    allowed = sorted(ServeSettings.model_fields)
    message = UNKNOWN_KEY.format(key=shown(key), allowed=", ".join(allowed))
    return message + did_you_mean(key, allowed)


def parse_settings(
    raw: Mapping[str, Any] | ServeSettings, names: Mapping[str, str] | None = None
) -> ServeSettings:
    """Validate builder args or CLI values.

    ``names`` maps a key to how the caller's user wrote it (``{"max_batch_size":
    "--batch-size"}``); other keys are named ``serve.<key>``.

    Raises:
        SpecError: naming the key, the value and what is allowed.
    """
    if isinstance(raw, ServeSettings):
        return raw
    problems = [
        Problem((names or {}).get(str(key), f"serve.{key}"), _unknown(str(key)))
        for key in raw
        if key not in ServeSettings.model_fields
    ]
    if problems:
        raise SpecError("\n".join(map(str, problems)), problems)
    try:
        return ServeSettings.model_validate(dict(raw))
    except ValidationError as exc:
        for problem in validation_problems(exc, ["serve"]):
            _, _, key = problem.path.partition(".")
            head, dot, rest = key.partition(".")
            shown = (names or {}).get(head)
            path = f"{shown}{dot}{rest}" if shown else problem.path
            problems.append(Problem(path, problem.message))
        raise SpecError("\n".join(map(str, problems)), problems) from None


def config_text(settings: ServeSettings, *, host: str, port: int, app_name: str) -> str:
    """A Serve config file (YAML text) for ``serve run`` / ``serve deploy``: one
    application of ``regtune.serve.app:build_app`` whose ``args`` are the settings
    that differ from the defaults (and the model), Serve's proxy on ``host:port``.

    Direct ingress is not in it (Serve reads it from the environment where Ray
    starts, not from a config file); the file's first lines say how to get it.
    """
    import yaml

    defaults = ServeSettings(model=settings.model).model_dump(mode="json")
    args = {k: v for k, v in settings.model_dump(mode="json").items() if v != defaults.get(k)}
    args["model"] = settings.model
    config = {
        "proxy_location": "HeadOnly",
        "http_options": {"host": host, "port": port},
        "applications": [
            {
                "name": app_name,
                "route_prefix": "/",
                "import_path": "regtune.serve.app:build_app",
                "args": args,
            }
        ],
    }
    return CONFIG_HEADER + yaml.safe_dump(config, sort_keys=False)
