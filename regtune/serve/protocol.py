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
not JSON, or JSON behind a  400     ``body``
UTF-8 byte order mark
not an object / extra key   422     ``body`` / the key
a key twice in one object   422     the key's path (``instances[2].age``)
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

A request with several problems is refused by the first, in record order
(within a record: a type problem before a range, category or group one), and
the message counts the others: "(and 2 more problems in this request)". A
value is quoted as JSON writes it (``null``, ``true``, ``"x"``), cut to
:data:`VALUE_SHOWN` characters; a key the client sent that is not one of the
model's inputs is cut the same way wherever it is named (message and
``field``), so a refusal stays small whatever the request holds.

A key written twice in one object (``{"age": 39, "age": 80}``) is refused
rather than read as its last value (JSON leaves it undefined, and parsers
differ): :func:`refuse_duplicate_keys` names the key, where it is, and counts
any other such key.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
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
    "cut_text",
    "more_errors",
    "refuse_bom",
    "refuse_duplicate_keys",
    "shown_value",
]

#: Longest request id (``X-Request-ID`` on predict, ``request_id`` in feedback).
MAX_REQUEST_ID_CHARS = 256
#: How many allowed names an error message lists before summarizing.
NAMES_SHOWN = 8
#: Longest quote of a refused value, or of a key or header the client sent, in a
#: message or a ``field`` (:func:`shown_value`, :func:`cut_text`).
VALUE_SHOWN = 40

UnknownCategories = Literal["accept", "reject"]

BODY_TOO_LARGE = "body is {size} bytes; at most {limit} bytes are allowed per request"
NOT_JSON = "body is not valid JSON ({error})"
#: The three bytes a UTF-8 byte order mark is.
UTF8_BOM = b"\xef\xbb\xbf"
BOM = (
    "body is not valid JSON: it starts with a UTF-8 byte order mark (bytes EF BB BF); "
    "send the JSON text without it"
)
DUPLICATE_KEY = (
    "{where} has the key {key} {times}; a key may appear once per object "
    "(JSON parsers disagree on which value counts)"
)
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
UNKNOWN_CATEGORY = "{field} is {value}; expected {allowed}"
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
    """``value`` as JSON writes it (``null``, ``true``, ``"x"``, ``NaN``), cut to
    :data:`VALUE_SHOWN` characters, for a message: the parsed value written again,
    not the client's own text (``1e2`` shows as ``100.0``)."""
    if isinstance(value, str) and len(value) > VALUE_SHOWN:
        # One character past the cut: the quote is then too long and gets the "...".
        value = value[: VALUE_SHOWN + 1]
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not a parsed JSON value
        shown = repr(value)
    return cut_text(shown)


def cut_text(text: str) -> str:
    """``text`` cut to :data:`VALUE_SHOWN` characters (the last three ``...``): a key
    or header value a client sent, shown in a message or a ``field``, is never
    echoed whole (a 200,000-character key would make a 400 KB refusal)."""
    return text if len(text) <= VALUE_SHOWN else f"{text[: VALUE_SHOWN - 3]}..."


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
        # Names a path may show whole: a client's other keys are cut (cut_text).
        self._known_keys = frozenset(["instances", *self._allowed_keys])
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
        refuse_bom(body)
        try:
            top = _TOP.validate_json(body)
        except ValidationError as exc:
            raise self._top_error(exc) from None
        refuse_duplicate_keys(body, top, self._known_keys)
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
        found: list[_Found | None]
        try:
            records: list[dict[str, Any]] = self._records.validate_python(instances)
        except ValidationError as exc:
            # The other checks still read every value that passed this one, so the
            # first problem is the first by record order, and all of them are counted.
            found = [self._type_problems(exc)]
            checked: list[Any] = instances
            skip: set[tuple[int, str]] | None = {
                (int(e["loc"][0]), str(e["loc"][1])) for e in exc.errors() if len(e["loc"]) > 1
            }
        else:
            found, checked, skip = [], records, None
        if self._numeric_order:
            found.append(self._check_range(checked, skip))
        if self.limits.unknown_categories == "reject":
            found.append(self._check_categories(checked, skip))
        if self._extra_group is not None:
            found.append(self._check_groups(checked, self._extra_group, skip))
        problems = [f for f in found if f is not None]
        if problems:
            # min() keeps the earliest check on a tie: a type problem before a range one.
            first = min(problems, key=lambda f: f.index)
            more = sum(f.count for f in problems) - 1
            raise RequestError(
                first.message + more_errors(more),
                status=422,
                field=first.field,
                allowed=first.allowed,
            )
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
                EXTRA_TOP.format(key=cut_text(str(err["loc"][0]))), status=422,
                field=cut_text(str(err["loc"][0])), allowed="instances",
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

    def _type_problems(self, exc: ValidationError) -> _Found:
        """The first record's problem of the typed pass, and how many fields it refused."""
        errors = exc.errors()
        index = min(int(e["loc"][0]) for e in errors)
        # Union members each report their own failure: count each field once.
        count = len({e["loc"][:2] for e in errors})
        # A misspelt key shows up as one extra and one missing key: the extra one's
        # message lists the allowed keys, so it is the more useful one to report.
        own = [e for e in errors if e["loc"][0] == index]
        err = next((e for e in own if e["type"] == "extra_forbidden"), own[0])
        loc = err["loc"]
        if err["type"] == "extra_forbidden":
            # The client's own key, not a feature name: cut like a value.
            loc = (loc[0], cut_text(str(loc[1])))
        field = _field(loc[:2])
        if len(loc) == 1:
            message = RECORD_NOT_OBJECT.format(field=field, kind=_kind(err["input"]))
            return _Found(
                index, count, message, field, "an object mapping feature names to raw values"
            )
        feature = str(loc[1])
        if err["type"] == "extra_forbidden":
            allowed = _names(self._allowed_keys)
            message = EXTRA_FEATURE.format(field=field, allowed=allowed)
            return _Found(index, count, message, field, allowed)
        allowed = self.allowed(feature)
        if err["type"] == "missing":
            message = MISSING_FEATURE.format(field=field, allowed=allowed)
        else:
            message = BAD_VALUE.format(field=field, value=_kind(err["input"]), allowed=allowed)
        return _Found(index, count, message, field, allowed)

    def in_range(self, feature: str) -> str:
        """What a value of numeric ``feature`` may be, with its float32-safe range."""
        j = self._numeric_order.index(feature)
        center, scale = float(self._center[j]), float(self._scale[j])
        # (x - c) / s fits float32 for |x - c| <= s * FLOAT32_MAX (s > 0).
        # Shown a hair inside the edge, so the printed bounds themselves are accepted.
        reach = abs(scale) * FLOAT32_MAX * (1 - 1e-5)
        return IN_RANGE.format(lo=center - reach, hi=center + reach, center=center, scale=scale)

    def _check_range(self, records: list[Any], skip: _Skip) -> _Found | None:
        # The encoder's arithmetic (float64, then float32): a value refused here is
        # exactly one the model would have seen as infinite.
        names = self._numeric_order
        if skip is None:
            raw = np.array([[r[k] for k in names] for r in records], dtype=np.float64)
        else:
            # Raw records after a failed typed pass: a value it refused (NaN included)
            # or that is missing reads as NaN and is not this check's problem.
            raw = np.array(
                [[_number(r, i, k, skip) for k in names] for i, r in enumerate(records)],
                dtype=np.float64,
            )
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = ((raw - self._center) / self._scale).astype(np.float32)
        bad = ~np.isfinite(scaled) & ~np.isnan(raw)
        if not bad.any():
            return None
        index, j = (int(k) for k in np.argwhere(bad)[0])
        field = f"instances[{index}].{names[j]}"
        allowed = self.in_range(names[j])
        value = _kind(records[index][names[j]])
        message = BAD_VALUE.format(field=field, value=value, allowed=allowed)
        return _Found(index, int(bad.sum()), message, field, allowed)

    def _check_groups(self, records: list[Any], name: str, skip: _Skip) -> _Found | None:
        groups = self.schema.group_index()
        first: _Found | None = None
        count = 0
        for index, record in enumerate(records):
            if not _given(record, index, name, skip) or groups.code(record[name]) is not None:
                continue
            count += 1
            if first is None:
                field = f"instances[{index}].{name}"
                allowed = self.allowed(name)
                message = BAD_VALUE.format(field=field, value=_kind(record[name]), allowed=allowed)
                first = _Found(index, 0, message + LEAVE_OUT, field, allowed)
        return None if first is None else dataclasses.replace(first, count=count)

    def _check_categories(self, records: list[Any], skip: _Skip) -> _Found | None:
        first: _Found | None = None
        count = 0
        for index, record in enumerate(records):
            for name, vocab in self._vocab.items():
                if not _given(record, index, name, skip) or vocab.code(record[name]) is not None:
                    continue
                count += 1
                if first is None:
                    field = f"instances[{index}].{name}"
                    allowed = f"one of {_names(sorted(vocab.names), 'values')}"
                    message = UNKNOWN_CATEGORY.format(
                        field=field, value=shown_value(record[name]), allowed=allowed
                    )
                    first = _Found(index, 0, message, field, allowed)
        return None if first is None else dataclasses.replace(first, count=count)


#: The (record, feature) pairs the typed pass refused; None: it refused none.
_Skip = set[tuple[int, str]] | None


@dataclass(frozen=True)
class _Found:
    """One check's first problem (a 422): its record ``index``, message, field and
    what is allowed, and how many problems the check found in all."""

    index: int
    count: int
    message: str
    field: str
    allowed: str


def _given(record: Any, index: int, name: str, skip: _Skip) -> bool:
    """Whether ``record`` holds a value of ``name`` that the typed pass accepted."""
    if skip is None:
        return name in record
    return isinstance(record, dict) and name in record and (index, name) not in skip


def _number(record: Any, index: int, name: str, skip: set[tuple[int, str]]) -> float:
    """A numeric value the typed pass accepted, else NaN."""
    if not _given(record, index, name, skip):
        return float("nan")
    return float(record[name])


def refuse_bom(body: bytes) -> None:
    """A 400 for a body that starts with a UTF-8 byte order mark (JSON over HTTP has none)."""
    if body.startswith(UTF8_BOM):
        raise RequestError(
            BOM, status=400, field="body", allowed="JSON text without a byte order mark"
        )


class _Duplicate(Exception):
    """A JSON object of the body holds a key twice."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Duplicate
    return obj


def _pair_count(top: Any) -> int:
    """Key/value pairs of ``top`` and of the objects its values are or list (a request
    body's records); deeper objects are not counted."""
    if not isinstance(top, dict):
        return 0
    n = len(top)
    for value in top.values():
        if type(value) is list:
            n += sum(len(x) for x in value if type(x) is dict)
        elif type(value) is dict:
            n += len(value)
    return n


#: The bytes a key's colon may follow: its closing quote, or JSON whitespace.
_BEFORE_COLON = np.zeros(256, dtype=bool)
_BEFORE_COLON[list(b'" \t\n\r')] = True


def _key_colons(body: bytes) -> int:
    """The colons of ``body`` right after a quote or JSON whitespace: at least its
    key/value pairs (one colon each), more only by such colons inside strings."""
    raw = np.frombuffer(body, dtype=np.uint8)
    before = raw[np.flatnonzero(raw[1:] == ord(":"))]  # the byte before each colon
    return int(np.count_nonzero(_BEFORE_COLON[before]))


def refuse_duplicate_keys(
    body: bytes, parsed: Any = None, known: Collection[str] = frozenset()
) -> None:
    """A 422 when an object of JSON ``body`` holds a key twice, naming the key and the
    object (``instances[2]``) and counting any other such key. A key in the paths
    named is cut to :data:`VALUE_SHOWN` characters (:func:`cut_text`) unless it is
    one of the ``known`` names (the model's inputs, shown whole).

    ``parsed`` is the body as already parsed (its repeated keys collapsed), or None.
    With it, most bodies are cleared by counting colons, a small share of the time
    a second parse takes. Each key/value pair of the text has its colon right after
    the key's closing quote and JSON whitespace, so the colons that follow a quote
    or whitespace (:func:`_key_colons`) are at least the text's pairs; those are at
    least the parsed pairs (a repeated key's pairs become one), which are at least
    those of the top object and its records (:func:`_pair_count`). When the first
    count equals the last, so do the text's pairs and the parsed ones: no key
    repeats. Else (such a colon inside a string, as in ``"a : b"``, an object below
    a record, or a repeated key) the body is parsed again to look. A body the
    standard ``json`` module cannot read as UTF-8 passes: its parser, not this
    check, refuses it."""
    if parsed is not None and _key_colons(body) == _pair_count(parsed):
        return
    try:
        # UTF-8 only (json.loads would take UTF-16 bytes too); numbers as text: no
        # value is needed, and no integer is too long.
        text = body.decode("utf-8")
        json.loads(text, object_pairs_hook=_unique, parse_int=str)
        return
    except _Duplicate:
        pass
    except (ValueError, RecursionError):
        return
    tree = json.loads(text, object_pairs_hook=_Pairs, parse_int=str)
    found = _find_duplicates(tree, known)
    where, key, field, times = found[0]
    message = DUPLICATE_KEY.format(
        where=where, key=shown_value(key), times="twice" if times == 2 else f"{times} times"
    )
    raise RequestError(
        message + more_errors(len(found) - 1),
        status=422,
        field=field,
        allowed="each key once per object",
    )


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs, repeated keys kept."""


def _find_duplicates(tree: Any, known: Collection[str]) -> list[tuple[str, str, str, int]]:
    """Each repeated key, in document order: (object path, key, key path, times)."""
    found: list[tuple[str, str, str, int]] = []
    stack: list[tuple[Any, str]] = [(tree, "body")]  # no recursion: any depth json reads
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Pairs):
            counts: dict[str, int] = {}
            for key, _ in node:
                counts[key] = counts.get(key, 0) + 1
            found += [(path, k, _child(path, k, known), n) for k, n in counts.items() if n > 1]
            stack += [(value, _child(path, key, known)) for key, value in reversed(node)]
        elif isinstance(node, list):
            stack += [(value, f"{path}[{i}]") for i, value in reversed(list(enumerate(node)))]
    return found


def _child(path: str, key: str, known: Collection[str]) -> str:
    shown = key if key in known else cut_text(key)
    return shown if path == "body" else f"{path}.{shown}"


@with_config(ConfigDict(extra="forbid"))
class _Top(TypedDict):
    instances: Any


_TOP = TypeAdapter(_Top)
