"""What the HTTP API accepts and returns: KServe v1 bodies, limits and 4xx errors.

A predict request is ``{"instances": [record, ...]}`` where each record is a
raw row as a client has it (``{"age": 39, "workclass": "State-gov", ...}``);
the answer is ``{"predictions": [{"label": ..., "probabilities": {...}}],
"model_version": ..., "request_id": ...}``.

:class:`RecordValidator` checks a raw body against one model's
:class:`~regtune.trainables.schema.FeatureSchema` in one pydantic pass and
turns every problem into a :class:`RequestError` that names the field
(``instances[3].age``), the value and what is allowed:

==========================  ======  ============================================
problem                     status  field
==========================  ======  ============================================
body over the byte cap      413     ``body``
not JSON                    400     ``body``
not an object / extra key   422     ``body`` / the key
``instances`` missing,      422     ``instances``
empty or too long
record not an object        422     ``instances[i]``
missing / extra feature     422     ``instances[i].<feature>``
wrong type, NaN, infinity   422     ``instances[i].<feature>``
number whose scaled value   422     ``instances[i].<feature>``
overflows float32
unseen category             --      accepted (the schema's rule: all-zero
                                    one-hot) unless ``unknown_categories="reject"``
sensitive attribute that    422     ``instances[i].<attribute>``
is not a feature, holding
a value that is no group
==========================  ======  ============================================

Categories and groups are compared by their canonical form
(:func:`~regtune.trainables.schema.canonical_value`): ``1``, ``1.0`` and
``"1"`` are one value, ``"Male "`` is ``"Male"``, ``"true"`` and ``1`` are
``True`` for a True/False column, and the allowed values named in errors are
canonical. (A value of a sensitive attribute that is also a feature is checked
by the served model: see :mod:`regtune.serve.predictor`.)

JSON's non-standard ``NaN`` / ``Infinity`` tokens and overflowing literals
such as ``1e999`` are parsed and then rejected per field, so the message says
which value was not finite. A finite number so large that its scaled value
``(value - center) / scale`` does not fit the model's float32 input (about
3.4e38) is refused the same way, with the range the feature allows: it would
reach the model as infinity and come out as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    with_config,
)
from typing_extensions import NotRequired, TypedDict

from regtune.errors import DataError
from regtune.serve.settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES
from regtune.trainables.schema import FeatureSchema

__all__ = [
    "LEAVE_OUT",
    "MAX_REQUEST_ID_CHARS",
    "VALUE_SHOWN",
    "FeedbackRequest",
    "Limits",
    "PredictResponse",
    "Prediction",
    "RecordValidator",
    "RequestError",
    "UnknownCategories",
    "more_errors",
]

#: Longest request id (``X-Request-ID`` on predict, ``request_id`` in feedback).
MAX_REQUEST_ID_CHARS = 256
#: How many allowed names an error message lists before summarizing.
NAMES_SHOWN = 8
#: Longest repr of a refused value quoted in a message.
VALUE_SHOWN = 40

UnknownCategories = Literal["accept", "reject"]

BODY_TOO_LARGE = "body is {size} bytes; at most {limit} bytes are allowed per request"
NOT_JSON = "body is not valid JSON ({error})"
NOT_OBJECT = 'body is {kind}; expected a JSON object {{"instances": [...]}}'
EXTRA_TOP = "body has key {key!r}; the only key allowed is 'instances'"
NO_INSTANCES = "instances is missing; expected a list of 1 to {limit} records"
INSTANCES_NOT_LIST = "instances is {kind}; expected a list of 1 to {limit} records"
INSTANCES_EMPTY = "instances is empty; expected 1 to {limit} records"
INSTANCES_TOO_MANY = "instances has {n} records; at most {limit} are allowed per request"
RECORD_NOT_OBJECT = "{field} is {kind}; expected an object mapping feature names to raw values"
MISSING_FEATURE = "{field} is missing; expected {allowed}"
EXTRA_FEATURE = "{field} is not an input of this model; allowed keys: {allowed}"
BAD_VALUE = "{field} is {value}; expected {allowed}"
UNKNOWN_CATEGORY = "{field} is {value!r}; expected one of {allowed}"
#: Appended where a record may omit its sensitive attribute (it is not a model
#: feature: a feature is required like any other).
LEAVE_OUT = " (or leave it out for the answer without per-group adjustment)"
MORE_ERRORS = " (and {n} more {problems} in this request)"


def more_errors(n: int) -> str:
    """The suffix counting a request's further problems ("1 more problem", "3 more problems")."""
    if n <= 0:
        return ""
    return MORE_ERRORS.format(n=n, problems="problem" if n == 1 else "problems")


FINITE_NUMBER = "a finite number"
IN_RANGE = (
    "a finite number from {lo:.6g} to {hi:.6g} (its scaled value (x - {center:.6g}) / "
    "{scale:.6g} must fit float32)"
)
#: The largest float32: an encoded input beyond it is infinite.
FLOAT32_MAX = float(np.finfo(np.float32).max)
CATEGORY_HINT = (
    "a category (string or number) such as {examples}; unseen categories encode as zeros"
)


class RequestError(DataError):
    """A request the server refuses: ``status`` (4xx), the ``field`` and what is ``allowed``."""

    def __init__(self, message: str, *, status: int, field: str, allowed: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.allowed = allowed

    def to_json(self) -> dict[str, Any]:
        """The error body the HTTP layer returns."""
        return {"error": str(self), "field": self.field, "allowed": self.allowed}


@dataclass(frozen=True)
class Limits:
    """Caps on one request; the defaults are
    :data:`~regtune.serve.settings.DEFAULT_MAX_BODY_BYTES` and
    :data:`~regtune.serve.settings.DEFAULT_MAX_INSTANCES`."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_instances: int = DEFAULT_MAX_INSTANCES
    unknown_categories: UnknownCategories = "accept"


class Prediction(BaseModel):
    """One record's answer: the most probable class and every class's probability."""

    label: str
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    """The answer to ``POST /v1/models/{name}:predict`` (KServe v1 plus ids)."""

    predictions: list[Prediction]
    model_name: str
    model_version: int
    request_id: str


class FeedbackRequest(BaseModel):
    """Ground truth for an earlier prediction: one label per instance, in request order.

    Each label is checked against the model's classes by
    :meth:`~regtune.serve.feedback.FeedbackTracker.add`, which names
    ``labels[i]``, the value and the classes.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(min_length=1, max_length=MAX_REQUEST_ID_CHARS)
    labels: list[Any] = Field(min_length=1)


_Category = StrictStr | StrictInt | StrictBool | StrictFloat


def _names(names: list[str], what: str = "keys") -> str:
    if len(names) <= NAMES_SHOWN:
        return ", ".join(names)
    head = ", ".join(names[: NAMES_SHOWN - 1])
    return f"{head}, ... {names[-1]} ({len(names)} {what})"


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    name = type(value).__name__
    article = "an" if name[0] in "aeiou" else "a"
    return f"{article} {name} ({shown_value(value)})"


def shown_value(value: Any) -> str:
    """``repr(value)`` cut to :data:`VALUE_SHOWN` characters, for a message."""
    shown = repr(value)
    return shown if len(shown) <= VALUE_SHOWN else f"{shown[: VALUE_SHOWN - 3]}..."


def _field(loc: tuple[int | str, ...]) -> str:
    path = "body"
    for part in loc:
        if isinstance(part, int):
            path = f"instances[{part}]" if path == "body" else f"{path}[{part}]"
        elif path == "body":
            path = part
        else:
            path = f"{path}.{part}"
    return path


def _first(exc: ValidationError) -> Any:
    # A misspelt key shows up as one extra and one missing key: the extra one's
    # message lists the allowed keys, so it is the more useful one to report.
    errors = exc.errors()
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


class RecordValidator:
    """Validates predict bodies for one schema; build once per served model.

    ``validate(body)`` returns the raw records (plain dicts holding exactly the
    model's input keys, plus the sensitive attribute when the schema has one
    that is not an input) or raises :class:`RequestError`.
    """

    def __init__(
        self, schema: FeatureSchema, limits: Limits = Limits(), *, groups_required: bool = False
    ) -> None:
        self.schema = schema
        self.limits = limits
        #: The served version's answers depend on each record's group (it has
        #: post-processing): its sensitive attribute takes one of the groups only,
        #: never an unseen category (the predictor refuses any other value).
        self.groups_required = groups_required
        self._numeric = {f.name for f in schema.numeric}
        self._numeric_order = [f.name for f in schema.numeric]
        self._center = np.array([f.center for f in schema.numeric], dtype=np.float64)
        self._scale = np.array([f.scale for f in schema.numeric], dtype=np.float64)
        self._vocab = {c.name: schema.value_index(c.name) for c in schema.categorical}
        self._allowed_keys = schema.input_names()
        fields: dict[str, Any] = {}
        for name in schema.input_names():
            fields[name] = float if name in self._numeric else _Category
        self._extra_group: str | None = None
        if schema.sensitive is not None and schema.sensitive not in fields:
            self._extra_group = schema.sensitive
            fields[schema.sensitive] = NotRequired[_Category]
            self._allowed_keys = [*self._allowed_keys, schema.sensitive]
        # Functional TypedDicts take any string key (names like "schema" or
        # "capital-gain" would clash with or be invalid as model attributes) and
        # validate to plain dicts, which is what the encoder and monitors need.
        record = with_config(ConfigDict(extra="forbid", strict=True, allow_inf_nan=False))(
            TypedDict("Record", fields)  # type: ignore[operator]
        )
        self._records: TypeAdapter[list[dict[str, Any]]] = TypeAdapter(list[record])  # type: ignore[valid-type]

    def allowed(self, feature: str) -> str:
        """What a value of ``feature`` may be, in words."""
        if feature in self._numeric:
            return FINITE_NUMBER
        vocab = self._vocab.get(feature)
        if vocab is None or (self.groups_required and feature == self.schema.sensitive):
            # The sensitive attribute kept for per-group feedback, or one the
            # version's answers depend on: any other value is refused.
            return f"one of {self.schema.group_names()}"
        if self.limits.unknown_categories == "reject":
            return f"one of {_names(sorted(vocab.names), 'values')}"
        return CATEGORY_HINT.format(examples=sorted(vocab.names)[:3])

    def validate(self, body: bytes) -> list[dict[str, Any]]:
        """Parse and check one request body; see the module docstring for the rules."""
        limit = self.limits.max_instances
        if len(body) > self.limits.max_body_bytes:
            raise RequestError(
                BODY_TOO_LARGE.format(size=len(body), limit=self.limits.max_body_bytes),
                status=413,
                field="body",
                allowed=f"at most {self.limits.max_body_bytes} bytes",
            )
        try:
            top = _TOP.validate_json(body)
        except ValidationError as exc:
            raise self._top_error(exc) from None
        instances = top["instances"]
        if not isinstance(instances, list):
            raise RequestError(
                INSTANCES_NOT_LIST.format(kind=_kind(instances), limit=limit),
                status=422,
                field="instances",
                allowed=f"a list of 1 to {limit} records",
            )
        if not instances:
            raise RequestError(
                INSTANCES_EMPTY.format(limit=limit),
                status=422,
                field="instances",
                allowed=f"1 to {limit} records",
            )
        if len(instances) > limit:
            raise RequestError(
                INSTANCES_TOO_MANY.format(n=len(instances), limit=limit),
                status=422,
                field="instances",
                allowed=f"at most {limit} records",
            )
        try:
            records: list[dict[str, Any]] = self._records.validate_python(instances)
        except ValidationError as exc:
            raise self._record_error(exc) from None
        if self._numeric_order:
            self._check_range(records)
        if self.limits.unknown_categories == "reject":
            self._check_categories(records)
        if self._extra_group is not None:
            self._check_groups(records, self._extra_group)
        return records

    def _top_error(self, exc: ValidationError) -> RequestError:
        err = _first(exc)
        if err["type"] == "json_invalid":
            return RequestError(
                NOT_JSON.format(error=err["msg"].removeprefix("Invalid JSON: ")),
                status=400,
                field="body",
                allowed="a JSON object",
            )
        if err["type"] == "extra_forbidden":
            return RequestError(
                EXTRA_TOP.format(key=err["loc"][0]), status=422, field=str(err["loc"][0]),
                allowed="instances",
            )  # fmt: skip
        if err["type"] == "missing":
            limit = self.limits.max_instances
            return RequestError(
                NO_INSTANCES.format(limit=limit), status=422, field="instances",
                allowed=f"a list of 1 to {limit} records",
            )  # fmt: skip
        return RequestError(
            NOT_OBJECT.format(kind=_kind(err["input"])), status=422, field="body",
            allowed='{"instances": [...]}',
        )  # fmt: skip

    def _record_error(self, exc: ValidationError) -> RequestError:
        errors = exc.errors()
        err = _first(exc)
        loc = err["loc"]
        # Union members each report their own failure: count each field once.
        more = len({e["loc"][:2] for e in errors}) - 1
        suffix = more_errors(more)
        field = _field(loc[:2])
        if len(loc) == 1:
            message = RECORD_NOT_OBJECT.format(field=field, kind=_kind(err["input"]))
            return RequestError(
                message + suffix, status=422, field=field,
                allowed="an object mapping feature names to raw values",
            )  # fmt: skip
        feature = str(loc[1])
        if err["type"] == "extra_forbidden":
            allowed = _names(self._allowed_keys)
            message = EXTRA_FEATURE.format(field=field, allowed=allowed)
            return RequestError(message + suffix, status=422, field=field, allowed=allowed)
        allowed = self.allowed(feature)
        if err["type"] == "missing":
            message = MISSING_FEATURE.format(field=field, allowed=allowed)
        else:
            message = BAD_VALUE.format(field=field, value=_kind(err["input"]), allowed=allowed)
        return RequestError(message + suffix, status=422, field=field, allowed=allowed)

    def in_range(self, feature: str) -> str:
        """What a value of numeric ``feature`` may be, with its float32-safe range."""
        j = self._numeric_order.index(feature)
        center, scale = float(self._center[j]), float(self._scale[j])
        # (x - c) / s fits float32 for |x - c| <= s * FLOAT32_MAX (s > 0).
        # Shown a hair inside the edge, so the printed bounds themselves are accepted.
        reach = abs(scale) * FLOAT32_MAX * (1 - 1e-5)
        return IN_RANGE.format(lo=center - reach, hi=center + reach, center=center, scale=scale)

    def _check_range(self, records: list[dict[str, Any]]) -> None:
        # The encoder's arithmetic (float64, then float32): a value refused here is
        # exactly one the model would have seen as infinite.
        names = self._numeric_order
        raw = np.array([[r[k] for k in names] for r in records], dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = ((raw - self._center) / self._scale).astype(np.float32)
        bad = ~np.isfinite(scaled)
        if not bad.any():
            return
        index, j = (int(k) for k in np.argwhere(bad)[0])
        more = int(bad.sum()) - 1
        field = f"instances[{index}].{names[j]}"
        allowed = self.in_range(names[j])
        value = _kind(records[index][names[j]])
        message = BAD_VALUE.format(field=field, value=value, allowed=allowed)
        suffix = more_errors(more)
        raise RequestError(message + suffix, status=422, field=field, allowed=allowed)

    def _check_groups(self, records: list[dict[str, Any]], name: str) -> None:
        groups = self.schema.group_index()
        for index, record in enumerate(records):
            if name in record and groups.code(record[name]) is None:
                field = f"instances[{index}].{name}"
                allowed = self.allowed(name)
                raise RequestError(
                    BAD_VALUE.format(field=field, value=_kind(record[name]), allowed=allowed)
                    + LEAVE_OUT,
                    status=422,
                    field=field,
                    allowed=allowed,
                )

    def _check_categories(self, records: list[dict[str, Any]]) -> None:
        for index, record in enumerate(records):
            for name, vocab in self._vocab.items():
                if vocab.code(record[name]) is None:
                    allowed = _names(sorted(vocab.names), "values")
                    raise RequestError(
                        UNKNOWN_CATEGORY.format(
                            field=f"instances[{index}].{name}", value=record[name], allowed=allowed
                        ),
                        status=422,
                        field=f"instances[{index}].{name}",
                        allowed=allowed,
                    )


@with_config(ConfigDict(extra="forbid"))
class _Top(TypedDict):
    instances: Any


_TOP = TypeAdapter(_Top)
