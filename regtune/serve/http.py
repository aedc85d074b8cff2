"""The HTTP routes (FastAPI) over a :class:`~regtune.serve.service.ModelService`.

Routes::

    GET  /healthz                           liveness; never needs the token
    GET  /v1/models                         served models
    GET  /v1/models/{name}                  version, inputs, canary state, rollback log
    POST /v1/models/{name}:predict          KServe v1 {"instances": [...]}
    GET  /v1/models/{name}/drift            PSI/KS per feature and the drift index
    POST /v1/models/{name}/feedback         {"request_id": ..., "labels": [...]}
    GET  /v1/models/{name}/feedback         accuracy, ECE, group gaps on labelled traffic
    GET  /docs, /openapi.json               the OpenAPI page

With a token configured, every route but ``/healthz`` needs
``Authorization: Bearer <token>``; only the token's sha256 is held here.
(Ray Serve's own ``/-/healthz`` and ``/-/routes`` are answered by its proxy
and by a replica's direct-ingress server before this app sees the request,
so no middleware here can guard them; docs/serving.md lists what they tell.)
Refusals are JSON ``{"error", "field", "allowed"}`` with a 4xx status, each
counted once in ``regtune_serve_rejected_total`` under the served model's
own name (never a name taken from the request) and its status; the
request id is the ``X-Request-ID`` header (Ray Serve's proxy sets one when
the client does not), else a fresh one. The header is read as UTF-8, as Ray
Serve's proxy and a replica's direct ingress read it (Starlette would read
latin-1): a non-ASCII id comes back, and takes feedback, as the client wrote
it; one that is not UTF-8 is refused (400).

A body is read as sent: a ``Content-Encoding`` other than ``identity`` (a
gzip body) is refused with a 415 naming the header, before the body is read.
The whole body must arrive within ``body_timeout_s`` seconds of the handler
starting to read it (:data:`~regtune.serve.settings.DEFAULT_BODY_TIMEOUT_S`):
a client that stalls mid-body (a ``Content-Length`` it never sends) gets a
408 with ``Connection: close``, and its request slot (one of
``max_ongoing_requests``) is freed, where it would otherwise be held for as
long as the connection stays open.
A POST body that starts with a UTF-8 byte order mark, or whose JSON holds a
key twice in one object, is refused (400, 422) on both POST routes (see
:mod:`regtune.serve.protocol`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from regtune import __version__
from regtune.serve.predictor import ModelOutputError
from regtune.serve.protocol import (
    BODY_TOO_LARGE,
    PredictResponse,
    RequestError,
    cut_text,
)
from regtune.serve.service import ModelService

__all__ = ["OPEN_PATHS", "BearerAuth", "create_api", "token_digest"]

#: Paths answered without the bearer token.
OPEN_PATHS = frozenset({"/healthz"})

NO_TOKEN = "this server needs a bearer token: send 'Authorization: Bearer <token>'"
BAD_TOKEN = "the bearer token does not match this server's"
MODEL_FAULT = "model fault: {error}"
NO_ROUTE = "no route {method} {path}; see /docs for the routes"
WRONG_METHOD = "{method} is not allowed on {path}; allowed: {allowed}"
ENCODED_BODY = (
    "the body is sent with Content-Encoding: {value}; this server reads only bodies sent "
    "as they are (Content-Encoding: identity, or no such header): send the JSON uncompressed"
)
REQUEST_ID_NOT_UTF8 = "X-Request-ID is not UTF-8 text ({error})"
BODY_TIMEOUT = (
    "the body did not all arrive within {seconds:g} s ({came} came); send the whole "
    "body without pausing (a Content-Length the body falls short of waits for the rest)"
)
#: What starts the verb of an action route (``/v1/models/NAME:predict``); no model
#: name holds it (registry names are letters, digits, ``_.-``).
ACTION = ":"

PREDICT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["instances"],
                "additionalProperties": False,
                "properties": {
                    "instances": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "description": "one raw record: feature name -> raw value",
                        },
                    }
                },
            },
            "example": {"instances": [{"age": 39, "workclass": "State-gov"}]},
        }
    },
}
FEEDBACK_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["request_id", "labels"],
                "properties": {
                    "request_id": {"type": "string"},
                    "labels": {"type": "array", "items": {}},
                },
            }
        }
    },
}


def token_digest(token: str) -> str:
    """The sha256 hex digest a server compares presented tokens against."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class BearerAuth:
    """ASGI middleware: 401 unless the bearer token's digest matches (open paths excepted).

    ``refused`` is called with 401 for each refusal (the rejection counter).
    """

    def __init__(
        self, app: ASGIApp, digest: str, refused: Callable[[int], None] | None = None
    ) -> None:
        self.app = app
        self.digest = digest.encode("ascii")
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Under a route prefix the path still carries it (ASGI root_path).
        if scope["path"].removeprefix(scope.get("root_path", "")) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            message = NO_TOKEN
        elif hmac.compare_digest(hashlib.sha256(token.strip()).hexdigest().encode(), self.digest):
            await self.app(scope, receive, send)
            return
        else:
            message = BAD_TOKEN
        if self.refused is not None:
            self.refused(401)
        body = {"error": message, "field": "Authorization", "allowed": "Bearer <token>"}
        response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


T = TypeVar("T")


async def _within(seconds: float, work: Awaitable[T]) -> T:
    """``work`` awaited, raising :class:`TimeoutError` after ``seconds``."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):  # no extra task per request
            return await work
    return await asyncio.wait_for(work, seconds)  # pragma: no cover (Python 3.10)


async def _read_body(request: Request, limit: int, deadline: float) -> bytes:
    """The body, refusing (413) as soon as it passes ``limit`` bytes, (415) one sent
    with a ``Content-Encoding`` other than ``identity``, and (408) one that has not
    all arrived ``deadline`` seconds after reading began."""
    encoding = ", ".join(request.headers.getlist("content-encoding"))
    if any(c.strip().lower() not in ("", "identity") for c in encoding.split(",")):
        raise RequestError(
            ENCODED_BODY.format(value=cut_text(encoding)),
            status=415,
            field="Content-Encoding",
            allowed="identity",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            BODY_TOO_LARGE.format(size=int(declared), limit=limit),
            status=413,
            field="body",
            allowed=f"at most {limit} bytes",
        )
    chunks: list[bytes] = []
    size = 0

    async def read() -> bytes:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(
                    BODY_TOO_LARGE.format(size=f"over {limit}", limit=limit),
                    status=413,
                    field="body",
                    allowed=f"at most {limit} bytes",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await _within(deadline, read())
    except (TimeoutError, asyncio.TimeoutError):  # one class from Python 3.11
        came = f"{size} bytes"
        if declared is not None:
            came = f"{size} of the {cut_text(declared)} bytes of its Content-Length"
        raise RequestError(
            BODY_TIMEOUT.format(seconds=deadline, came=came),
            status=408,
            field="body",
            allowed=f"a body that arrives within {deadline:g} s",
        ) from None


def _request_id(request: Request) -> str:
    """The ``X-Request-ID`` header read as UTF-8 (module docstring), else a fresh id."""
    raw = next((v for k, v in request.scope["headers"] if k.lower() == b"x-request-id"), b"")
    try:
        rid = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            REQUEST_ID_NOT_UTF8.format(error=exc.reason),
            status=400,
            field="X-Request-ID",
            allowed="UTF-8 text",
        ) from None
    return rid or uuid.uuid4().hex


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    # json.dumps straight to bytes: FastAPI's encoder walk costs more than the model here.
    return Response(json.dumps(payload), status_code=status, media_type="application/json")


def _methods_of(api: FastAPI, scope: Scope) -> str:
    """The methods of every route whose path matches ``scope``'s (``"GET, POST"``;
    empty: none). A path parameter never holds :data:`ACTION`: the describe route's
    ``{name}`` does not match ``NAME:predict``."""
    from starlette.routing import Match, Route

    methods: set[str] = set()
    for route in api.router.routes:
        if not isinstance(route, Route) or route.methods is None:
            continue
        match, child = route.matches({**scope, "method": "GET"})
        params = child.get("path_params", {}) if match is not Match.NONE else None
        if params is None or any(ACTION in str(v) for v in params.values()):
            continue
        methods |= route.methods - {"HEAD"}
    return ", ".join(sorted(methods))


def create_api(service: ModelService, *, token_sha256: str | None = None) -> FastAPI:
    """The FastAPI app for ``service``; see the module docstring."""
    api = FastAPI(
        title=f"regtune: {service.name}",
        version=__version__,
        description="Predictions, drift and feedback for a registered regtune model "
        "(KServe v1 JSON).",
    )
    limit = service.settings.max_body_bytes
    deadline = service.settings.body_timeout_s

    def count(status: int) -> None:
        # Tagged with the served model's own name: a client's path never makes a series.
        service.metrics.rejected(service.name, status)

    @api.exception_handler(RequestError)
    async def _refused(request: Request, exc: RequestError) -> Response:
        count(exc.status)
        response = _json(exc.to_json(), exc.status)
        if exc.status == 408:
            # The rest of the body may still come: the connection cannot carry another
            # request, and the server closes it once the answer is sent.
            response.headers["Connection"] = "close"
        return response

    @api.exception_handler(StarletteHTTPException)
    async def _framework(request: Request, exc: StarletteHTTPException) -> Response:
        # The framework's own refusals (no such route, wrong method) in the same shape.
        method, path = request.method, request.url.path
        status, headers = exc.status_code, dict(exc.headers or {})
        if status == 405:
            # Starlette names the methods of the first route whose path matched, which
            # for /v1/models/NAME:predict is the describe route's GET: every route
            # whose path really matches is asked instead (none: no such route).
            allowed = _methods_of(api, request.scope)
            status = 405 if allowed else 404
            headers = {"Allow": allowed} if allowed else {}
        count(status)
        if status == 404:
            body = {"error": NO_ROUTE.format(method=method, path=path), "field": "path",
                    "allowed": "a route listed at /docs"}  # fmt: skip
        elif status == 405:
            allowed = headers["Allow"]
            body = {"error": WRONG_METHOD.format(method=method, path=path, allowed=allowed),
                    "field": "method", "allowed": allowed}  # fmt: skip
        else:
            body = {"error": str(exc.detail), "field": "request", "allowed": ""}
        response = _json(body, status)
        response.headers.update(headers)
        return response

    @api.exception_handler(ModelOutputError)
    async def _model_fault(request: Request, exc: ModelOutputError) -> Response:
        body = {"error": MODEL_FAULT.format(error=exc), "field": "model", "allowed": ""}
        return _json(body, 500)

    @api.get("/healthz", tags=["health"])
    async def healthz() -> Response:
        """Liveness: the model is loaded and the replica answers."""
        return _json(service.health())

    @api.get("/v1/models", tags=["models"])
    async def models() -> Response:
        """The served model, its version, canary and shadow."""
        return _json(service.listing())

    @api.get("/v1/models/{name}", tags=["models"])
    async def model(name: str) -> Response:
        """Version, inputs, metrics, batching, canary state and rollback log."""
        if ACTION in name:
            # /v1/models/NAME:VERB (no model name holds a colon) is an action route,
            # never this one: GET on the predict route is a 405 (Allow: POST), on a
            # verb there is no route for a 404 (the handler above decides).
            raise StarletteHTTPException(405)
        return _json(service.describe(name))

    @api.post(
        "/v1/models/{name}:predict",
        tags=["predict"],
        response_model=PredictResponse,
        openapi_extra={"requestBody": PREDICT_BODY},
    )
    async def predict(name: str, request: Request) -> Response:
        """Predict raw records: ``{"instances": [...]}`` -> ``{"predictions": [...]}``."""
        service.reading += 1  # a request on its way: the one before it does not run alone
        try:
            body = await _read_body(request, limit, deadline)
        finally:
            service.reading -= 1
        rid = _request_id(request)
        return _json(await service.predict(name, body, rid))

    @api.get("/v1/models/{name}/drift", tags=["monitoring"])
    async def drift(name: str) -> Response:
        """PSI and KS per feature against the training reference, and the drift index."""
        return _json(await service.drift(name))

    @api.post(
        "/v1/models/{name}/feedback",
        tags=["monitoring"],
        openapi_extra={"requestBody": FEEDBACK_BODY},
    )
    async def feedback(name: str, request: Request) -> Response:
        """Ground-truth labels for an earlier request, one per instance."""
        body = await _read_body(request, limit, deadline)
        return _json(service.add_feedback(name, body))

    @api.get("/v1/models/{name}/feedback", tags=["monitoring"])
    async def feedback_summary(name: str) -> Response:
        """Accuracy, ECE and per-group gaps on labelled traffic."""
        return _json(await service.feedback_summary(name))

    if token_sha256:
        api.add_middleware(BearerAuth, digest=token_sha256, refused=count)
    return api
