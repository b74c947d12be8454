"""`PUT /v1/me/position`, the heaviest traffic (every device every few seconds).

`PositionFastPath` answers it as plain ASGI, ahead of FastAPI itself (`FixesFirst`): its
native telemetry (a context attached and a check of the whole middleware stack for every
request, even one it does not trace), the error, body-limit and authentication middleware,
routing and dependency solving, which together cost several times the fix itself. It
authenticates the same way (same 401s, same rate limits, checks in the API's order) and
usually needs one Redis round trip: the device's identity comes from a per-process cache
and the fix's script checks it is still current (token not revoked, member still in that
team), so revocation and roster changes still take effect at once. The FastAPI route of
the same path documents it and answers the same way.

The request is not traced: position fixes are not incidents, and a span per fix at
thousands a second would cost more than the fix. Accepted, refused and published fixes
are counted in the metrics instead.
"""

from __future__ import annotations

import hmac
import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.events import UnitPosition, utcnow
from shared.http import (
    FIELD_NAME,
    STORE_AWAY,
    ApiError,
    AuthFailures,
    RateLimits,
    ServiceApp,
    bearer_token,
    conflict,
    describe_field_error,
    error_body,
    forbidden,
    locked_out,
    log_unexpected,
    no_store,
    rate_limited,
    store_away,
    unauthorized,
)
from shared.metrics import meter
from shared.tokens import issued_shape

from ..config import Settings
from ..domain.positions import PositionIn, check_accuracy, fix_time
from ..store import teams as teams_store
from ..store.coordinators import TOKEN_PREFIX as COORDINATOR_PREFIX
from ..store.coordinators import CoordinatorTokens
from ..store.devices import DeviceIdentity, TokenResolver, token_hash
from ..store.teams import PositionWriter

PATH = "/v1/me/position"
MAX_BODY = 4096
IDENTITIES_MAX = 200_000  # cached device identities per process (a few MB at most)

OTHER_DEVICE = "not_this_device"  # the error code of a fix from another device of the member
_OUTCOMES = {teams_store.POSITION_STALE: "stale", teams_store.POSITION_STORED: "stored",
             teams_store.POSITION_PUBLISHED: "published",
             teams_store.POSITION_OFF_DUTY: "off_duty"}


def checked_fix(body: PositionIn, *, now: datetime, settings: Settings) -> datetime:
    """The fix's time, once the settings' limits (`POSITION_MAX_FUTURE_S`,
    `POSITION_MAX_ACCURACY_M`) take it; else a 422 naming the field. The request's own
    input: judged before a caller of the wrong kind hears its 403 (DESIGN's order)."""
    try:
        at = fix_time(body, now=now, max_future_s=settings.position_max_future_s)
    except ValueError as exc:
        raise ApiError(422, "invalid_field", f"at {exc}", "at") from exc
    try:
        check_accuracy(body, max_accuracy_m=settings.position_max_accuracy_m)
    except ValueError as exc:
        raise ApiError(422, "invalid_field", f"accuracy_m {exc}", "accuracy_m") from exc
    return at


async def accept_position(
    body: PositionIn, who: DeviceIdentity, *, token: str, positions: PositionWriter,
    settings: Settings,
) -> tuple[int, dict[str, Any]]:
    """Store the fix; the writer's outcome and the answer. `token` is the device's bearer
    token hash, which the write checks is still this device's."""
    now = utcnow()
    at = checked_fix(body, now=now, settings=settings)
    event = UnitPosition(
        district=who.district, unit_id=who.team_id, lat=body.lat, lon=body.lon,
        accuracy_m=body.accuracy_m, at=at,
    )
    result = await positions.write(event, member_id=who.member_id, device_id=who.device_id,
                                   token_hash=token, now=now)
    if result == teams_store.POSITION_OFF_DUTY:
        raise conflict("the team is off_duty: positions are kept only on shift; allowed: "
                       "start a shift (POST /v1/me/shift/start) first")
    if result == teams_store.POSITION_NOT_ON_SHIFT:
        # A member at home with the page open would move the team to their home.
        raise conflict("you are not on the team's shift: its position comes only from "
                       "members on shift; allowed: check in (POST /v1/me/shift/start) first")
    if result == teams_store.POSITION_OTHER_DEVICE:
        # A tablet at home with the page open, the member's phone on the street: it would
        # move the team kilometres (its own code, so that a page says which it is).
        raise ApiError(409, OTHER_DEVICE, "this device is not the one you checked in with: "
                       "the team's position comes from that one; allowed: check in from this "
                       "device (POST /v1/me/shift/start) to share its position instead")
    out: dict[str, Any] = {"accepted": result >= teams_store.POSITION_STORED,
                           "published": result == teams_store.POSITION_PUBLISHED}
    if result == teams_store.POSITION_STALE:
        out["reason"] = "older than the team's latest fix"
    return result, out


def is_position_fix(scope: Scope) -> bool:
    return scope["path"] == PATH and scope.get("method") == "PUT"


def _invalid(exc: ValidationError) -> ApiError:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = [str(p) for p in err["loc"]]
    if err["type"] == "extra_forbidden" and loc and not FIELD_NAME.match(loc[-1]):
        # a key that is no field name (a number, a name) is the sender's data: named by
        # where it is, never echoed, as the app's own handler answers
        where = ".".join(loc[:-1]) or "(body)"
        return ApiError(422, "invalid_field", f"{'the body' if where == '(body)' else where} "
                        "holds a key that is no known field (not shown: it is not a field "
                        "name)", where)
    path = ".".join(loc) or "(body)"
    if err["type"] == "model_type" or path == "(body)":
        return ApiError(422, "bad_body", "the request body must be a JSON object", "(body)")
    # the shared error handler's wording, as the FastAPI route of the path answers
    return ApiError(422, "invalid_field", f"{path} {describe_field_error(err)}", path)


def parse_fix(raw: bytes) -> PositionIn:
    try:
        data = json.loads(raw)
    # json raises RecursionError for arrays or objects nested past the recursion limit
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "bad_json", "the request body is not valid JSON") from exc
    try:
        return PositionIn.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from exc


class FixesFirst(ServiceApp):
    """The volunteers app: FastAPI, with position fixes handed to `fixes` before FastAPI's
    own work (under 2,000 fixes a second that work was ~13 % of volunteers' CPU); their
    answers, as every other, marked not to be stored (a member's position)."""

    fixes: ASGIApp | None = None  # a PositionFastPath, maybe behind shared.http.browser_access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fixes is not None and scope["type"] == "http" and is_position_fix(scope):
            await self.fixes(scope, receive, no_store(scope, send))
            return
        await super().__call__(scope, receive, send)


class PositionFastPath:
    """Answers `PUT /v1/me/position` (the requests `is_position_fix` picks) itself."""

    def __init__(self, *, positions: PositionWriter, tokens: TokenResolver,
                 coordinators: CoordinatorTokens, settings: Settings, rate_limits: RateLimits,
                 failures: AuthFailures) -> None:
        self._positions = positions
        self._tokens = tokens
        self._coordinators = coordinators
        self._settings = settings
        self._limits = rate_limits
        self._failures = failures
        self._admin = settings.admin_token.get_secret_value().encode()
        self._service = settings.service_key().encode()
        self._identities: dict[str, DeviceIdentity] = {}
        self.outcomes: Counter[str] = Counter()
        meter("volunteers").create_observable_counter(
            "lianfang.volunteers.position_fixes", callbacks=[self._observe],
            description="position fixes received, by outcome")

    def _observe(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"outcome": outcome}) for outcome, n in self.outcomes.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra: dict[str, str] | None = None
        try:
            try:
                status, payload = await self._handle(scope, receive)
            except STORE_AWAY as exc:  # as the app's own handler answers (shared.http)
                raise store_away(exc) from None
        except ApiError as exc:
            self.outcomes[f"refused_{exc.status}"] += 1
            status, payload = exc.status, error_body(exc.code, exc.message, exc.field)
            extra = exc.headers
        except Exception as exc:  # as the app's own handler answers (shared.http)
            log_unexpected(exc, "PUT /v1/me/position")
            self.outcomes["failed"] += 1
            status, payload = 500, error_body("internal", "internal error")
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()),
                   *((k.lower().encode(), v.encode()) for k, v in (extra or {}).items())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _identity(self, token: str, hashed: str, scope: Scope) -> DeviceIdentity:
        who = self._identities.get(hashed)
        if who is None:
            who = await self._tokens.resolve(token)
            if who is None:
                self._failures.failed(scope)
                raise unauthorized("unknown or revoked token")
            if len(self._identities) >= IDENTITIES_MAX:
                self._identities.clear()
            self._identities[hashed] = who
        return who

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        token = bearer_token(scope)
        # as shared.http.AuthMiddleware: a token of an issued one's shape is checked anyway
        if (wait := self._failures.locked(scope)) is not None and not issued_shape(token):
            raise locked_out(wait)
        if token is None:
            raise unauthorized("missing bearer token")
        kind = ("admin" if hmac.compare_digest(token.encode(), self._admin)
                else "service" if hmac.compare_digest(token.encode(), self._service) else None)
        subject = kind
        if kind is None and token.startswith(COORDINATOR_PREFIX):  # known here, no phone
            coordinator = await self._coordinators.resolve(token)
            if coordinator is None:
                self._failures.failed(scope)
                raise unauthorized("unknown or revoked token")
            kind, subject = "coordinator", coordinator.coordinator_id
        if kind is not None and subject is not None:
            if (wait := self._limits.hit(kind, subject)) is not None:
                raise rate_limited(wait)
            # 400/422 come before 403: the body's own fields, and the settings' limits
            checked_fix(parse_fix(await _read(receive)), now=utcnow(), settings=self._settings)
            raise forbidden("this endpoint is for device tokens")
        hashed = token_hash(token)
        who = await self._identity(token, hashed, scope)
        if (wait := self._limits.hit("device", who.device_id)) is not None:
            raise rate_limited(wait)
        fix = parse_fix(await _read(receive))
        for _ in range(2):
            result, out = await accept_position(fix, who, token=hashed, positions=self._positions,
                                                settings=self._settings)
            if result != teams_store.POSITION_NOT_CURRENT:
                self.outcomes[_OUTCOMES[result]] += 1
                return 200, out
            # Revoked, or the member moved to another team: ask again, as if new.
            self._identities.pop(hashed, None)
            who = await self._identity(token, hashed, scope)
        raise unauthorized("unknown or revoked token")  # changing under us: try again later


async def _read(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, "too_large", f"a position fix is at most {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)

