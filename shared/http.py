"""HTTP conventions shared by the four services: error bodies, authentication, health, serving.

Errors are `{"error": {"code", "message", "field"?}}` and never echo the request body.
Authentication runs as ASGI middleware before routing and body parsing, so a request
without a valid token gets 401 before any 400/422/404, as the public API promises; a token
of the wrong kind for a route gets its 403 once the input is valid (`InputFirstRoute`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import inspect
import ipaddress
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import UnionType
from typing import Annotated, Any, Literal, NoReturn, Union, cast, get_args, get_origin

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from limits import parse
from opentelemetry import trace
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import fieldnames
from shared.described import describe_traceback, record_failure
from shared.fieldnames import describe_field_error
from shared.tokens import issued_shape, service_key

log = logging.getLogger(__name__)

# "service": the services' own calls to volunteers (shared.tokens.service_key); "agency": an
# agency's own desk at dispatch (a security company's, a police station's), which reads its
# own teams and their orders only (`agency_id`); "coordinator": a district's volunteer
# coordinator at volunteers (its roster, devices, shift plans and points, of its `districts`)
PrincipalKind = Literal["admin", "dispatcher", "inspector", "agency", "system", "device",
                        "service", "coordinator"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. Services fill what they know of their own token kinds."""

    kind: PrincipalKind
    subject: str
    districts: tuple[str, ...] = ()
    member_id: str | None = None
    team_id: str | None = None
    agency_id: str | None = None
    agency_kind: str | None = None
    device_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # A token checked with its owner (volunteers' device tokens): when it was asked, by
    # this host's wall clock, kept by a cached answer. What it says of the member (their
    # team) may be as old as that, not older.
    checked_at: float | None = None


class ApiError(Exception):
    """`incident_id`: the incident an error is about, for a program to read (a report's
    409: the incident its ref made), beside the message's words for a person."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, *,
                 incident_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers
        self.incident_id = incident_id


class PersistenceFailingError(ResponseError):
    """`-MISCONF`: Redis cannot persist (its disk full or failing: a background save failed
    with `stop-writes-on-bgsave-error yes`, or an AOF write failed) and refuses every write
    until it can again. redis-py has no class of its own for it (a plain ResponseError)."""


def _register_misconf() -> None:
    """Have redis-py raise PersistenceFailingError for `-MISCONF` replies, as it raises
    OutOfMemoryError for `-OOM`: its parsers (the Python ones and hiredis's, whose
    `replyError` is the same `parse_error`) look each error's prefix up in the class-level
    table `BaseParser.EXCEPTION_CLASSES` when they parse it, so one entry there covers every
    client of the process (ours, FastStream's, pipelines, MULTI/EXEC replies), and every
    `except STORE_AWAY` and `except ResponseError` keeps catching it. The table is not a
    public API: should a redis-py release move it, MISCONF would be a plain ResponseError
    again (a 500 per request, poison for the dead letters), and
    tests/integration/test_redis_disk_failing.py fails."""
    try:
        from redis._parsers.base import BaseParser
    except ImportError:  # pragma: no cover - a redis-py that moved it: see above
        log.warning("redis-py's error table not found: MISCONF is not taken as a refusal")
        return
    BaseParser.EXCEPTION_CLASSES.setdefault("MISCONF", PersistenceFailingError)


_register_misconf()

# Redis answering but refusing every write for a while: full (`maxmemory` with `noeviction`:
# OOM), after a failover a replica (READONLY), or unable to persist (its disk full or
# failing: MISCONF). Nothing was written (a script or a transaction is refused before its
# first write), so asking again once memory or disk is freed or the new primary answers is
# safe: a state that passes, as an outage is.
STORE_REFUSING: tuple[type[Exception], ...] = (OutOfMemoryError, ReadOnlyError,
                                               PersistenceFailingError)
_REFUSAL_CAUSES: tuple[tuple[type[Exception], str], ...] = (
    (OutOfMemoryError, "it is full"),
    (ReadOnlyError, "it is a replica, failing over"),
    (PersistenceFailingError, "it cannot save to disk"),
)


def refusal_cause(exc: BaseException | None) -> str | None:
    """Why Redis refuses writes ("it is full", ...), for messages and logs; None when `exc`
    is no refusal (STORE_REFUSING)."""
    for kind, cause in _REFUSAL_CAUSES:
        if isinstance(exc, kind):
            return cause
    return None

# Redis restarting or out of reach (redis-py has retried already), or refusing writes for a
# while (STORE_REFUSING): a state that passes. Callers get 503 with Retry-After, devices 1013,
# and consumers leave the event pending for the reclaimer, never a dead letter.
STORE_AWAY: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError,
                                           *STORE_REFUSING)


def describe_away(exc: BaseException) -> str:
    """What a STORE_AWAY failure says of Redis, for a log line: "not answering", or
    "refusing writes, it is full" (or failing over, or cannot save to disk)."""
    cause = refusal_cause(exc)
    return "not answering" if cause is None else f"refusing writes, {cause}"


class TryAgain(Exception):
    """A refusal that passes: the caller should ask again shortly. Answered 503 with
    Retry-After, the message saying why (never 500: nothing is broken, and asking again
    works)."""

    retry_after_s = 1


def error_body(code: str, message: str, field: str | None = None, *,
               incident_id: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        err["field"] = field
    if incident_id is not None:
        err["incident_id"] = incident_id
    return {"error": err}


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def forbidden(message: str, field: str | None = None) -> ApiError:
    """`field`: the request's own field whose value this caller may not use (a district it
    does not cover), named as a 422 names one; none for an object the caller named by id."""
    return ApiError(403, "forbidden", message, field)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def rate_limited(wait_s: int) -> ApiError:
    return ApiError(429, "rate_limited", f"too many requests for this token; retry in {wait_s} s",
                    headers={"Retry-After": str(wait_s)})


def locked_out(wait_s: int) -> ApiError:
    return ApiError(429, "rate_limited", "too many failed authentications from this address; "
                    f"retry in {wait_s} s", headers={"Retry-After": str(wait_s)})


def store_away(exc: BaseException | None = None) -> ApiError:
    """Redis restarting, out of reach or refusing writes (STORE_AWAY): 503, ask again."""
    if (cause := refusal_cause(exc)) is not None:
        return ApiError(503, "unavailable", f"the store is not taking writes now ({cause}); "
                        "ask again", headers={"Retry-After": "2"})
    return ApiError(503, "unavailable", "the store is not answering; ask again",
                    headers={"Retry-After": "2"})


def store_not_answering(timeout_s: float, *, changing: bool = False,
                        note: str | None = None) -> ApiError:
    """A request Redis gave no answer within `timeout_s` (AnswerWithin): 503, ask again.
    `changing`: the request's writes had begun, and a write Redis did not answer may have
    been made all the same (a script is atomic; the client just did not hear), so the
    message says so; `note`, a route's own word on asking again (`when_not_answered`)."""
    if not changing:
        message = "the store is not answering; ask again"
    else:
        message = (f"the store is not answering (no answer within {timeout_s:g} s): whether "
                   "this change was made is not known; ask again")
        message += f" ({note})" if note else " (a change made is not made twice)"
    return ApiError(503, "unavailable", message, headers={"Retry-After": "2"})


_LOCATION_ROOTS = {"body", "query", "path", "header", "cookie"}


# An unknown key unlike a field name is the caller's data, not a misspelt field (shared.bus
# leaves it out of dead letters' reasons too).
FIELD_NAME = fieldnames.FIELD_NAME


def known_fields(route: object, loc: Sequence[Any]) -> list[str]:
    """The fields the JSON object at `loc` (a validation error's, "body" first) of a route's
    body may hold, in the model's order (their aliases where they have one); none when it
    is not a model's (a dict's, a route without a body model)."""
    body = getattr(route, "body_field", None)
    if body is None or not loc or loc[0] != "body":
        return []
    kind: Any = body.field_info.annotation
    for part in loc[1:]:
        kind = _model_in(kind)
        if kind is None:
            return []
        if isinstance(part, int):  # an item of a list: its items' type
            items = [a for a in get_args(kind) if a is not type(None)]
            kind = items[0] if items else None
            continue
        found = next((f for name, f in kind.model_fields.items()
                      if (f.alias or name) == part), None) if _is_model(kind) else None
        if found is None:
            return []
        kind = found.annotation
    model = _model_in(kind)
    return [f.alias or name for name, f in model.model_fields.items()] if _is_model(model) else []


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _model_in(kind: Any) -> Any:
    """`kind` with Optional and Annotated taken off: a model, a list, or what it is."""
    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
        elif origin in (Union, UnionType):
            rest = [a for a in get_args(kind) if a is not type(None)]
            if len(rest) != 1:
                return kind
            kind = rest[0]
        else:
            return kind


def _field_path(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOCATION_ROOTS:
        parts = parts[1:]
    return ".".join(parts) or "(body)"


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "field": {"type": "string", "description": "dotted path of the wrong field"},
            "incident_id": {"type": "string", "description": "added 2026-12: the incident "
                            "the error is about, where there is one (intake's 409 for a "
                            "report under an external_ref already taken: the incident that "
                            "ref made)"},
        },
    }},
}
_ERROR_STATUSES = {
    "400": "Broken JSON", "401": "Missing or unknown token",
    "403": "This caller may not act on this object", "404": "Not found",
    "409": "The object's state forbids it", "413": "Body too large",
    "422": "A field is wrong", "429": "Too many requests (see Retry-After)",
    "503": "Not now: ask again (see Retry-After)",
}


def _document_errors(app: FastAPI) -> None:
    """The OpenAPI document shows our error body and bearer authentication, not FastAPI's
    default validation error, so clients and schema checks see what the API really sends."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version,
                           description=app.description, routes=app.routes)
        components = spec.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Error"] = ERROR_SCHEMA
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"bearer": []}]
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        own = _own_error_words(app)
        for path, operations in spec.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                said = own.get((path, method), {})
                for status, text in _ERROR_STATUSES.items():
                    # a route's own words for one of them (intake's 409: a ref already taken
                    # by another report, no object's state) are what its callers must read
                    responses[status] = {"description": said.get(status, text), **error}
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def unparsable_body(cause: BaseException) -> str:
    """Why a body Python's JSON parser gave up on is not read, in words a caller can act
    on (never what it held). FastAPI says "There was an error parsing the body" for each:
    a system writing GBK, as many of China's older ones do, was not told JSON is UTF-8."""
    if isinstance(cause, UnicodeDecodeError):
        why = "it is not UTF-8 text (GBK or another encoding is not read; JSON is UTF-8)"
    elif isinstance(cause, RecursionError):
        why = "it is nested too deeply"
    elif isinstance(cause, ValueError):  # a number of more digits than Python converts
        why = "it holds a number too long to read"
    else:
        why = "it could not be parsed"
    return f"the request body is not valid JSON: {why}"


def _own_error_words(app: FastAPI) -> dict[tuple[str, str], dict[str, str]]:
    """What each operation's route says of an error status itself (`responses=` with a
    description), by (path, method) as the OpenAPI document names them."""
    from fastapi.routing import iter_route_contexts

    said: dict[tuple[str, str], dict[str, str]] = {}
    # (as get_openapi walks them: an included router's routes are reached through it)
    for route in iter_route_contexts(app.routes):
        responses = getattr(route, "responses", None) or {}
        words = {str(status): answer["description"] for status, answer in responses.items()
                 if str(status) in _ERROR_STATUSES and isinstance(answer, dict)
                 and answer.get("description")}
        for method in getattr(route, "methods", None) or ():
            said[(route.path_format, method.lower())] = words
    return said


def install_error_handlers(app: FastAPI) -> None:
    _document_errors(app)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(
                error_body("bad_json", "the request body is not valid JSON"), status_code=400
            )
        first = errors[0]
        loc = tuple(first.get("loc", ()))
        if first.get("type") == "extra_forbidden" and loc and not FIELD_NAME.match(str(loc[-1])):
            # a key that is no field name (a caller's number, a name) is body, not a path:
            # named by where it is, never echoed
            where = _field_path(loc[:-1])
            return JSONResponse(error_body(
                "invalid_field", f"{'the body' if where == '(body)' else where} holds a key "
                "that is no known field (not shown: it is not a field name)", where),
                status_code=422)
        path = _field_path(loc)
        if first.get("type") == "extra_forbidden" and (
                known := known_fields(request.scope.get("route"), loc[:-1])):
            # what may be there, as an unknown category is told the policy's: a machine's
            # firmware that adds a field to every alert is mended from the answer alone
            return JSONResponse(error_body(
                "invalid_field", f"{path} is not a known field (known here: "
                f"{', '.join(known)})", path), status_code=422)
        if path == "(body)":
            # FastAPI reads a body as JSON only when it is declared so: a JSON object sent
            # as form data (curl -d) or with no content type arrives as bytes
            message = ("the request body must be a JSON object, sent with Content-Type: "
                       "application/json" if isinstance(exc.body, bytes | bytearray)
                       else "the request body must be a JSON object")
            return JSONResponse(error_body("bad_body", message, "(body)"), status_code=422)
        return JSONResponse(
            error_body("invalid_field", f"{path} {describe_field_error(first)}", path), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's only 400 of its own: a body its JSON parser gave up on, told as
        # "There was an error parsing the body" whatever the cause (unparsable_body)
        codes = {400: "bad_json", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        detail = str(exc.detail)
        if exc.status_code == 400 and exc.__cause__ is not None:
            detail = unparsable_body(exc.__cause__)
        return JSONResponse(
            error_body(codes.get(exc.status_code, "http_error"), detail),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(TryAgain)
    async def _try_again(_: Request, exc: TryAgain) -> JSONResponse:
        log.warning("answered 503: %s", exc)
        return JSONResponse(error_body("unavailable", f"{exc}; ask again"), status_code=503,
                            headers={"Retry-After": str(exc.retry_after_s)})

    async def _store_away(_: Request, exc: Exception) -> JSONResponse:
        log.warning("answered 503: Redis %s (%s)", describe_away(exc), type(exc).__name__)
        return error_response(store_away(exc))

    for away in STORE_AWAY:  # a state that passes: 503, and the caller asks again
        app.add_exception_handler(away, _store_away)

    # Only where AnswerUnexpected is not (an app not a ServiceApp): Starlette's
    # ServerErrorMiddleware calls it, then raises the exception on to the server.
    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log_unexpected(exc, _what(request.scope))
        return unexpected_response()


def unexpected_response() -> JSONResponse:
    return JSONResponse(error_body("internal", "internal error"), status_code=500)


def log_unexpected(exc: BaseException, what: str) -> None:
    """An exception no handler answered in `what` (a method and route), logged and recorded
    on the request's span by its type, the fields it names and its frames
    (shared.described), never a pydantic error's own text: it quotes the input it refused
    (a caller's phone)."""
    log.error("unhandled error: %s in %s\n%s", type(exc).__name__, what,
              describe_traceback(exc))
    record_failure(trace.get_current_span(), exc)


class AnswerUnexpected:
    """An HTTP request's exception no handler answered: logged as log_unexpected says, and
    answered 500 unless an answer began, without raising it on. Starlette's own
    ServerErrorMiddleware, outside every middleware, always raises it again after its
    handler answered, and uvicorn logs "Exception in ASGI application" with the exception's
    own text and FastAPI's telemetry sees it (shared.http.TELEMETRY). ServiceApp puts it
    around the service's own middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = False

        async def sending(message: Message) -> None:
            nonlocal began
            began = began or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            log_unexpected(exc, _what(scope))
            if not began:  # else uvicorn ends the connection, the answer incomplete
                await unexpected_response()(scope, receive, send)


TokenResolver = Callable[[str], Awaitable[Principal | None]]
# A principal known from an earlier request, for the requests (scope) whose own write checks
# the token is still current; None: resolve it as usual.
CachedResolver = Callable[[str, Scope], Principal | None]

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/openapi.json"})
# Swagger UI's own files for /docs (add_docs_page): public, as the page is
DOCS_STATIC = "/docs/static"

# Per token, per process. Generous enough for a 110 centre's bursts and a phone's positions,
# small enough that one runaway client cannot starve the others. RATE_LIMIT_<KIND> overrides.
DEFAULT_RATE_LIMITS: dict[str, str] = {
    "system": "600/second",
    "device": "20/second",
    "dispatcher": "50/second",
    "inspector": "50/second",
    "agency": "50/second",
    "coordinator": "50/second",
    "admin": "1000/second",
    "service": "1000/second",  # each service's calls to volunteers, all under one key
}


class RateLimits:
    """Limits per principal kind, counted per token subject (GCRA: a smoothed moving window).

    "20/second" lets a token send 20 requests at once, then one every 50 ms. The state is one
    float per token, pruned when it no longer matters. (The `limits` package parses the
    specifications; its in-memory storage scanned every key from a thread every 10 ms, which
    with 10,000 device tokens cost volunteers a fifth of its CPU.)
    """

    _PRUNE_EVERY = 10_000

    def __init__(self, limits: dict[str, str] | None = None) -> None:
        merged = {**DEFAULT_RATE_LIMITS, **(limits or {})}
        self._rules: dict[str, tuple[float, float]] = {}
        for kind, spec in merged.items():
            if spec:
                item = parse(spec)
                interval = item.get_expiry() / item.amount
                self._rules[kind] = (interval, item.get_expiry() - interval)
        self._tat: dict[tuple[str, str], float] = {}  # theoretical arrival time per token
        self._hits = 0

    def retry_after(self, who: Principal) -> int | None:
        """None if the call may go ahead; else the seconds to wait."""
        return self.hit(who.kind, who.subject)

    def hit(self, kind: str, subject: str) -> int | None:
        """Count a call of this token; None if it may go ahead, else the seconds to wait."""
        rule = self._rules.get(kind)
        if rule is None:
            return None
        interval, tolerance = rule
        now = time.monotonic()
        key = (kind, subject)
        tat = max(self._tat.get(key, now), now)
        if tat - now > tolerance + 1e-9:  # (float sums of the interval)
            return max(1, math.ceil(tat - tolerance - now))
        self._tat[key] = tat + interval
        self._hits += 1
        if self._hits % self._PRUNE_EVERY == 0:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        return None


def client_address(scope: Scope) -> str:
    """Where a request comes from, for counting: the client's address (a proxy's own, unless
    uvicorn is told to trust it to name the client: FORWARDED_ALLOW_IPS), an IPv6 address by
    its /64 (a subscriber's, or a host's, whole block)."""
    client = scope.get("client")
    host = str(client[0]) if client else ""
    if ":" in host:
        try:
            return f"{ipaddress.IPv6Network(f'{host}/64', strict=False).network_address}/64"
        except ValueError:
            pass
    return host


class AuthFailures:
    """Failed bearer authentications per client address, in this process.

    The limit's failures ("20/minute": that many within a minute; the `limits` package
    parses it) from one address lock it out for `lockout_s`: each of its requests is then
    answered 429 with Retry-After, its token not even checked, so that no one can try
    ADMIN_TOKEN (user-chosen, 16 characters or more) faster than the limit. Only failures
    count (a token presented and unknown; no token at all is no guess), and successes
    forgive none: callers that authenticate, a whole station behind one NAT address, are
    never locked out by their own requests, and cost one look at an empty dict.

    A token of an issued token's shape (shared.tokens.issued_shape: a device token, system
    key, desk or coordinator token or the services' own key; 256 random bits) is checked all the same while
    its address is locked out, and its failure counted (a lockout it completes starts
    again): guessing it is hopeless however fast, and the address is shared by every caller
    behind it (127.0.0.1 under `make run`, the services' own calls to volunteers among them;
    a proxy's clients), whom one stale token tried would lock out with it.

    In memory, per process, not in Redis: the lockout is looked up before every request
    (in Redis, a round trip each); it works while Redis is away; and each service's Redis
    user reaches its own keys only. A guesser gets the limit from each process (four
    services, times their workers and replicas): against an ADMIN_TOKEN of 16 characters
    or more, or the 256 random bits of the tokens the services issue, it changes nothing.
    """

    _PRUNE_EVERY = 1000

    def __init__(self, limit: str = "20/minute", lockout_s: float = 60) -> None:
        item = parse(limit) if limit else None
        self._limit = item.amount if item else 0  # 0: no limit
        self._period = float(item.get_expiry()) if item else 0.0
        self._lockout_s = lockout_s
        self._recent: dict[str, deque[float]] = {}  # address -> its latest failures' times
        self._locked: dict[str, float] = {}  # address -> locked out until (monotonic)
        self._counted = 0

    def locked(self, scope: Scope) -> int | None:
        """None if the request may authenticate; else the seconds its address is still
        locked out for."""
        if not self._locked:  # the usual case
            return None
        address = client_address(scope)
        until = self._locked.get(address)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            del self._locked[address]
            return None
        return max(1, math.ceil(left))

    def failed(self, scope: Scope) -> None:
        """Counts a failed authentication from the request's address; the limit's last
        failure within its period locks the address out."""
        if not self._limit:
            return
        now = time.monotonic()
        address = client_address(scope)
        recent = self._recent.setdefault(address, deque(maxlen=self._limit))
        recent.append(now)
        if len(recent) == self._limit and now - recent[0] < self._period:
            del self._recent[address]
            self._locked[address] = now + self._lockout_s
            log.warning("%d failed authentications from %s within %g s: its requests are "
                        "refused for %g s", self._limit, address or "(unknown address)",
                        self._period, self._lockout_s)
        self._counted += 1
        if self._counted % self._PRUNE_EVERY == 0:
            self._recent = {a: r for a, r in self._recent.items() if now - r[-1] < self._period}
            self._locked = {a: until for a, until in self._locked.items() if until > now}


# A browser cannot set headers on a WebSocket, but offers subprotocols, sent in the
# Sec-WebSocket-Protocol header: the member's page offers SOCKET_SUBPROTOCOL and its token
# as TOKEN_SUBPROTOCOL + token (the tokens the services issue are HTTP tokens, as a
# subprotocol must be: a prefix and URL-safe base64). The server chooses SOCKET_SUBPROTOCOL,
# never the token, and a browser fails a handshake that chooses none of those it offered.
SOCKET_SUBPROTOCOL = "lianfang.v1"
TOKEN_SUBPROTOCOL = "token."


def bearer_token(scope: Scope) -> str | None:
    """The request's bearer token: its Authorization header; a WebSocket's may come as a
    subprotocol (the member's page) or `?token=` (devices built before; a TLS proxy logs
    the URL, its query string with it)."""
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    if scope["type"] == "websocket":
        for offered in scope.get("subprotocols") or ():
            if offered.startswith(TOKEN_SUBPROTOCOL) and len(offered) > len(TOKEN_SUBPROTOCOL):
                return str(offered[len(TOKEN_SUBPROTOCOL):])
        from urllib.parse import parse_qs

        qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if qs.get("token"):
            return qs["token"][0]
    return None


def socket_subprotocol(scope: Scope) -> str | None:
    """The subprotocol a WebSocket's accept chooses: SOCKET_SUBPROTOCOL if the client
    offered it (never a token's), else none."""
    return SOCKET_SUBPROTOCOL if SOCKET_SUBPROTOCOL in (scope.get("subprotocols") or ()) else None


class AuthMiddleware:
    """Resolves the bearer token to a `Principal` in `scope["state"]["principal"]`, or 401s."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        admin_token: str,
        resolve: TokenResolver | None = None,
        cached: CachedResolver | None = None,
        public_paths: Iterable[str] = (),
        rate_limits: RateLimits | None = None,
        failures: AuthFailures | None = None,
        counted_elsewhere: Callable[[Scope, str | None], bool] | None = None,
        max_body_bytes: int | None = 1_000_000,
        body_limits: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self._admin = admin_token.encode()
        self._service = service_key(admin_token).encode()
        self._resolve = resolve
        self._cached = cached
        self._public = PUBLIC_PATHS | frozenset(public_paths)
        self._limits = rate_limits or RateLimits()
        self._failures = failures or AuthFailures()
        # requests whose token's failure another service counts, by its own caller's address
        self._elsewhere = counted_elsewhere
        self._max_body = max_body_bytes
        self._body_limits = body_limits or {}  # exact paths with a limit of their own

    async def principal_for(self, token: str, scope: Scope | None = None) -> Principal | None:
        if hmac.compare_digest(token.encode(), self._admin):
            return Principal(kind="admin", subject="admin")
        if hmac.compare_digest(token.encode(), self._service):
            return Principal(kind="service", subject="service")
        if self._cached is not None and scope is not None:
            known = self._cached(token, scope)
            if known is not None:
                return known
        if self._resolve is not None:
            return await self._resolve(token)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] not in ("http", "websocket") or scope["path"] in self._public
                or scope["path"].startswith(DOCS_STATIC + "/")):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        counted = self._elsewhere is None or not self._elsewhere(scope, token)
        # A locked-out address's tokens of an issued one's shape are checked (AuthFailures)
        if (counted and (wait := self._failures.locked(scope)) is not None
                and not issued_shape(token)):
            if scope["type"] == "websocket":
                await _refuse_socket(scope, receive, send, 1013, "try again later")
                return
            await error_response(locked_out(wait))(scope, receive, send)
            return
        try:
            principal = await self.principal_for(token, scope) if token else None
        except STORE_AWAY as exc:
            # Redis away: whether the token is good is not known now. Neither yes nor no.
            log.warning("token not resolved: Redis %s (%s)", describe_away(exc),
                        type(exc).__name__)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1013, "reason": "try again later"})
                return
            await error_response(store_away(exc))(scope, receive, send)
            return
        if principal is None:
            if token is not None and counted:
                self._failures.failed(scope)
            if scope["type"] == "websocket":
                await _refuse_socket(scope, receive, send, 4401, "unauthorized")
                return
            message = "missing bearer token" if token is None else "unknown or revoked token"
            await error_response(unauthorized(message))(scope, receive, send)
            return
        wait = self._limits.retry_after(principal)
        if wait is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1013, "reason": "rate limited"})
                return
            await error_response(rate_limited(wait))(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        limit = self._body_limits.get(scope["path"], self._max_body)
        if scope["type"] == "http" and limit is not None:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await _too_large(limit)(scope, receive, send)
                return
            receive = _limited(receive, limit)
        await self.app(scope, receive, send)


async def _refuse_socket(scope: Scope, receive: Receive, send: Send, code: int,
                         reason: str) -> None:
    """Accepts the socket only to close it with `code`, and sends nothing else. A close
    before the accept is an HTTP 403 to the client (the ASGI spec), so a page could not
    tell a refused token, not to be tried again, from a network that dropped; nor could a
    browser whose offered subprotocol the accept did not choose (socket_subprotocol)."""
    if (await receive())["type"] != "websocket.connect":  # the client left already
        return
    accept: dict[str, Any] = {"type": "websocket.accept"}
    if (subprotocol := socket_subprotocol(scope)) is not None:
        accept["subprotocol"] = subprotocol
    await send(accept)
    await send({"type": "websocket.close", "code": code, "reason": reason})


# What the member's page sends: its bearer token, JSON, and the order's trace on answers.
CORS_OPTIONS: dict[str, Any] = {"allow_methods": ["GET", "POST", "PUT", "DELETE"],
                                "allow_headers": ["authorization", "content-type", "traceparent"],
                                "max_age": 600}


def browser_access(app: ASGIApp, origins: Iterable[str]) -> ASGIApp:
    """`app` answering the browsers of `origins` too (CORS: preflights answered before any
    authentication, the allow header on every answer); `app` itself when there are none.
    Bearer tokens only, never cookies: no credentials mode."""
    allowed = list(origins)
    return CORSMiddleware(app, allow_origins=allowed, **CORS_OPTIONS) if allowed else app


def allow_browsers(app: FastAPI, origins: Iterable[str]) -> None:
    """Let the browsers of `origins` call `app` (see `browser_access`). Call it after every
    other `add_middleware`: the last added runs first, so a preflight never meets the
    authentication."""
    allowed = list(origins)
    if allowed:
        app.add_middleware(CORSMiddleware, allow_origins=allowed, **CORS_OPTIONS)


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def page_scripts(html: str) -> str:
    """The Content-Security-Policy sources of the inline scripts of `html` (`'sha256-…'`
    each): a `script-src` of these, without 'unsafe-inline', runs the page's own script and
    no script that server data shown in it might carry (nor an inline event handler)."""
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"
        for text in _INLINE_SCRIPT.findall(html))


def page_headers(policy: str) -> dict[str, str]:
    """The headers of an HTML page a service serves (the console, the member's page), with
    its Content-Security-Policy `policy`. Such a page keeps its token in the browser and acts
    with one click (close an incident, decline an order): no other site may show it in a
    frame and have a click land on a button it hides. No referrer: a `#token=` link's
    address goes nowhere."""
    return {"Content-Security-Policy": f"{policy}; object-src 'none'; base-uri 'none'; "
                                       "frame-ancestors 'none'",
            "X-Frame-Options": "DENY",  # browsers older than frame-ancestors
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.message, exc.field,
                                   incident_id=exc.incident_id),
                        status_code=exc.status, headers=exc.headers)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(error_body("too_large", f"the request body is over {limit} bytes"),
                        status_code=413)


def _limited(receive: Receive, limit: int) -> Receive:
    """A receive that stops a body without Content-Length once it passes the limit."""
    seen = 0

    async def wrapped() -> Any:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:  # FastAPI passes its own HTTPException through body parsing
                raise HTTPException(413, f"the request body is over {limit} bytes")
        return message

    return wrapped


def principal(request: Request) -> Principal:
    return request.scope["state"]["principal"]


def require(*kinds: PrincipalKind) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller, if it is one of `kinds`; 403 otherwise, once the
    input is valid on a route of `InputFirstRoute` (DESIGN: 400/422 before 403), at once
    on any other (the endpoint of such a route may ignore the caller it is given)."""

    async def dependency(request: Request) -> Principal:  # async: no thread hand-off
        who: Principal = request.scope["state"]["principal"]
        if who.kind in kinds:
            return who
        refusal = forbidden(f"this endpoint is for {' or '.join(kinds)} tokens")
        if _checking_input.get() is not request.scope:
            raise refusal
        request.scope.setdefault(_REFUSAL, refusal)  # raised before the endpoint runs
        # Typed as the caller it stands in for: the endpoint never gets it, and a
        # dependency that reads it as the caller raises the refusal.
        return cast(Principal, Refused(refusal))

    return dependency


# The request whose route refuses a caller's kind only once its input is valid, while that
# route's handler runs (`InputFirstRoute`): `require` records its refusal in the request's
# scope and the endpoint, called once FastAPI has validated the input, raises it.
_checking_input: ContextVar[Scope | None] = ContextVar("checking_input", default=None)
_REFUSAL = "shared.http.refusal"


class Refused:
    """What `require` gives, on a route of `InputFirstRoute`, in place of a caller of the
    wrong kind: the 403 to answer once the input is valid. Never a `Principal`: reading
    anything of it (a dependency that takes the caller) raises that 403 there."""

    __slots__ = ("_refusal",)

    def __init__(self, refusal: ApiError) -> None:
        self._refusal = refusal

    def __getattr__(self, name: str) -> NoReturn:
        raise self._refusal


def _refusing_first(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """`endpoint`, raising first the refusal `require` recorded for this request. Wrapped
    (functools.wraps) so that FastAPI reads the endpoint's own parameters, return type,
    name and docstring, and awaits it or runs it in a thread as it would the endpoint."""

    def refuse_if_refused() -> None:
        scope = _checking_input.get()
        refusal = None if scope is None else scope.get(_REFUSAL)
        if refusal is not None:
            raise refusal

    if inspect.iscoroutinefunction(endpoint) or inspect.iscoroutinefunction(
            getattr(endpoint, "__call__", None)):  # noqa: B004 - an object with async __call__

        @functools.wraps(endpoint)
        async def refusing_first(*args: Any, **kwargs: Any) -> Any:
            refuse_if_refused()
            return await endpoint(*args, **kwargs)

        return refusing_first

    @functools.wraps(endpoint)
    def refusing_first_sync(*args: Any, **kwargs: Any) -> Any:
        # also a generator endpoint's: its generator is made here, after the check
        refuse_if_refused()
        return endpoint(*args, **kwargs)

    return refusing_first_sync


class InputFirstRoute(APIRoute):
    """A route that tells a caller of the wrong kind its 400/422 first, as DESIGN orders
    the checks (401, 400/422, 404, 403, 409): FastAPI solves the dependencies, `require`
    among them, before it validates the path, query and body. Here `require` records its
    403 instead (`Refused`), and the endpoint raises it once the input is valid, before its
    own body runs (where a route looks its object up: 404 there comes after, and rightly,
    for such a caller may act on none of the route's objects).

    Every route of a `ServiceApp`, and of the services' routers (`route_class=`). A route of
    any other class refuses a wrong kind at once, as before: safe, out of order. (WebSocket
    routes are FastAPI's own class whatever the router's; `require` takes a Request, so
    serves HTTP routes only: a socket checks its caller itself, as notify's does.)"""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, _refusing_first(endpoint), **options)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            checking = _checking_input.set(request.scope)
            try:
                return await handle(request)
            finally:
                _checking_input.reset(checking)

        return handler


# Answers carry callers, members' names and phones, positions and timelines: neither the
# browser nor a proxy on the way may keep them (a station's shared computer, a phone's
# operator proxy). An answer that says itself how it may be kept (the member's page's service
# worker, revalidated) keeps its own; Swagger UI's files are no one's data. (Pragma is no
# answer header: RFC 9111 gives it meaning in requests only.)
_NO_STORE = (b"cache-control", b"no-store")
_ANSWER_STARTS = frozenset({"http.response.start", "websocket.http.response.start"})


def no_store(scope: Scope, send: Send) -> Send:
    """`send`, with `Cache-Control: no-store` added to the answer unless it has a
    Cache-Control of its own or is one of Swagger UI's files (see `ServiceApp`)."""
    if scope["type"] not in ("http", "websocket") or scope["path"].startswith(DOCS_STATIC + "/"):
        return send

    async def marked(message: Any) -> None:
        if message["type"] in _ANSWER_STARTS:
            headers = list(message.get("headers", ()))
            if not any(key.lower() == b"cache-control" for key, _ in headers):
                message = {**message, "headers": [*headers, _NO_STORE]}
        await send(message)

    return marked


class ServiceApp(FastAPI):
    """A service's app: FastAPI, each answer marked not to be stored (`no_store`). Around
    the whole of it, so that the authentication's 401s and 429s, the WebSocket handshake's
    refusals and Starlette's own 500s are marked as the routes' answers are. Its own routes
    are of `InputFirstRoute`; the routers it includes name it themselves."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.router.route_class = InputFirstRoute

    def build_middleware_stack(self) -> ASGIApp:
        # AnswerUnexpected around the service's own middleware (an authentication's failure
        # answered too), inside Starlette's ServerErrorMiddleware, which would raise on
        own = self.user_middleware
        self.user_middleware = [Middleware(AnswerUnexpected), *own]
        try:
            return super().build_middleware_stack()
        finally:
            self.user_middleware = own

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, no_store(scope, send))


# What starts the app's answer: from then on it is the app's, whatever it waits for.
_ANSWER_BEGINS = frozenset({"http.response.start", "websocket.accept", "websocket.close",
                            "websocket.http.response.start"})
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_WHEN_NOT_ANSWERED = "_lianfang_when_not_answered"
_OWN_BOUND = "_lianfang_answers_within"


def when_not_answered(note: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Marks a write route whose request, asked again after a 503 that did not say whether
    it was made, is not the same request (it makes a second thing): `note` tells the caller
    what to do of the first (AnswerWithin's 503 carries it). Put it under the route's
    decorator."""

    def mark(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        setattr(endpoint, _WHEN_NOT_ANSWERED, note)
        return endpoint

    return mark


def answers_within(seconds: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Marks a route whose work is long by its nature (a city's roster: seconds of quick
    writes, none of them a Redis that does not answer) with a bound of its own instead of
    AnswerWithin's, counted from the request's start alike. Put it under the route's
    decorator."""

    def mark(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        setattr(endpoint, _OWN_BOUND, seconds)
        return endpoint

    return mark


class AnswerWithin:
    """Every request answered within `timeout_s` of its own time: a Redis that stops
    answering without going away (its process frozen, its disk stalled) held each request
    for about a minute (redis-py's 5 s read timeout, tried again), a dispatcher's console
    with it. Then 503 with Retry-After (code `unavailable`), as for a Redis that is away.

    Only until the answer begins (a response's start; a socket's accept or refusal): a
    socket's life and a response's body are the app's. The time the request waits for its
    client (the body arriving) is not counted. At the bound the request is answered and
    left to end as it would have (its writes, its audit, its locks released), not cancelled
    at whatever it awaited: what it does after is logged and not sent. A read is told to
    ask again; a write whose route had begun that whether it was made is not known (a script
    is atomic: Redis may have made it and the answer is all that was lost), and what asking
    again does: nothing twice, or the route's own word (`when_not_answered`). `unbounded`:
    the requests with a bound of their own (intake's reports and follow-ups)."""

    def __init__(self, app: ASGIApp, *, timeout_s: float,
                 unbounded: Callable[[Scope], bool] = lambda scope: False) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self._unbounded = unbounded
        self._answering: set[asyncio.Task[None]] = set()  # the 503s being sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The request runs on in the server's task, a timer beside it: a task of its own and
        # a wait per request cost ~18 µs, a sixth of a phone's position fix on the fast path.
        if scope["type"] not in ("http", "websocket") or self._unbounded(scope):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        left = self.timeout_s  # of the store's time: the client's body arriving is not
        armed_at = loop.time()
        begun = late = extended = False
        answering: asyncio.Task[None] | None = None  # the 503, once the bound passed

        def expire() -> None:
            nonlocal late, extended, left, armed_at, timer, answering
            own = getattr(scope.get("endpoint"), _OWN_BOUND, None)  # its route's, once routed
            if own is not None and not extended and own > self.timeout_s:
                extended = True
                armed_at, left = loop.time(), own - self.timeout_s
                timer = loop.call_at(armed_at + left, expire)
                return
            late = True  # from now on the app's own answer is dropped
            answering = loop.create_task(self._answer_late(scope, receive, send))
            self._answering.add(answering)
            answering.add_done_callback(self._answering.discard)

        timer = loop.call_at(armed_at + left, expire)

        async def timed_receive() -> Any:
            nonlocal left, armed_at, timer
            if begun or late:
                return await receive()
            timer.cancel()
            left -= loop.time() - armed_at
            try:
                return await receive()
            finally:
                if not (begun or late):
                    armed_at = loop.time()
                    timer = loop.call_at(armed_at + left, expire)

        async def answer(message: Any) -> None:
            nonlocal begun
            if late:  # answered 503 already
                return
            if not begun and message["type"] in _ANSWER_BEGINS:
                begun = True
                timer.cancel()
            await send(message)

        try:
            await self.app(scope, timed_receive, answer)
        except asyncio.CancelledError:
            if late:
                log.info("%s, answered 503, was cancelled", _what(scope))
            raise
        except Exception as exc:
            if not late:
                raise
            log.info("%s, answered 503, then failed: %s", _what(scope), type(exc).__name__)
        else:
            if late:
                log.info("%s, answered 503, then ended (its answer not sent)", _what(scope))
        finally:
            timer.cancel()
        if answering is not None:
            # Not returned to the server before the 503 is sent: the request may end in the
            # loop's turn the bound passed, its own answer dropped, before the 503's task
            # has run, and a server answers a request that returned unanswered itself
            # (uvicorn: 500) and refuses the 503 after it.
            await asyncio.wait((answering,))

    async def _answer_late(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The 503 (a socket's 1013), sent beside the request, which goes on."""
        refusal = self._refusal(scope)
        log.warning("answered 503: Redis gave no answer within %g s (%s)", self.timeout_s,
                    _what(scope))
        if scope["type"] == "http":
            await error_response(refusal)(scope, receive, send)
        elif "websocket.http.response" in scope.get("extensions", {}):
            response = error_response(refusal)  # the handshake answers 503
            await send({"type": "websocket.http.response.start", "status": response.status_code,
                        "headers": response.raw_headers})
            await send({"type": "websocket.http.response.body", "body": response.body})
        else:
            await send({"type": "websocket.close", "code": 1013, "reason": "try again later"})

    def _refusal(self, scope: Scope) -> ApiError:
        endpoint = scope.get("endpoint")
        # A route not yet begun (the token still being checked) has changed nothing.
        changing = endpoint is not None and scope.get("method", "GET") not in _READS
        return store_not_answering(self.timeout_s, changing=changing,
                                   note=getattr(endpoint, _WHEN_NOT_ANSWERED, None))


def _what(scope: Scope) -> str:
    return f"{scope.get('method', 'WEBSOCKET')} {_route_path(scope)}"


def _route_path(scope: Scope) -> str:
    """The route's template (`/v1/incidents/{incident_id}`), not the request's path: a log
    line names what was asked, never whose (ids stay out)."""
    route = scope.get("route")
    return getattr(route, "path", None) or "(no route)"


def _is_probe(scope: Any) -> bool:
    return scope.get("path") in ("/healthz", "/readyz", "/metrics")


# FastAPI's native telemetry: one server span per request (not also one for dependencies,
# the endpoint and serialization), and none for probes polled every few seconds. Its log
# export off: it records unhandled exceptions with their messages and stack traces (a
# pydantic error quotes a caller's phone; shared.http.log_unexpected says what failed). No
# exporters of its own (FASTAPI_OTEL_AUTO_CONFIGURE=true would add OTLP exporters for
# spans, metrics and logs): shared.telemetry sets the exporters up.
TELEMETRY = {"exclude": _is_probe, "operation_spans": False, "logs": False,
             "auto_configure": False}


# /readyz's own bound: a Redis that stops answering (a frozen process, a stalled disk) held
# the probe as long as it stayed so, where "not ready" is the answer an operator needs.
READY_TIMEOUT_S = 2.0


def add_health_routes(app: FastAPI, ready: Callable[[], Awaitable[bool]]) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                ok = await ready()
        except Exception as exc:  # Redis down, not yet loaded or not answering: not ready
            log.warning("not ready: %s", type(exc).__name__)
            ok = False
        return JSONResponse({"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503)


def add_docs_page(app: FastAPI) -> None:
    """`/docs`, Swagger UI, from files the service ships (fastapi-offline's) instead of a
    CDN: a station's server is often off the Internet (the page was blank), and a script
    from elsewhere would run on the same origin as the console, whose token the browser
    keeps. The app is made with `docs_url=None, redoc_url=None`."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app.mount(DOCS_STATIC, StaticFiles(directory=str(files("fastapi_offline") / "static")),
              name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title}: API",
            swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters)
