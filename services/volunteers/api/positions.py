"""`PUT /v1/me/position`, the heaviest traffic (every device every few seconds).

`accept_position` is the one implementation. `PositionFastPath` serves it as plain ASGI,
inside the shared AuthMiddleware (so 401s are the same as everywhere) but before FastAPI's
routing and dependency solving, which cost several times the two Redis round trips the fix
itself needs. The FastAPI route of the same path documents it and answers the same way.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.events import UnitPosition, utcnow
from shared.http import ApiError, Principal, conflict, error_body

from ..config import Settings
from ..domain.positions import PositionIn, fix_time
from ..store import teams as teams_store
from ..store.teams import PositionWriter

PATH = "/v1/me/position"
MAX_BODY = 4096

# The shared error handler's wording for the errors a fix can have.
_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "greater_than_equal": "is too small",
    "less_than_equal": "is too large",
}


async def accept_position(
    body: PositionIn, who: Principal, *, positions: PositionWriter, settings: Settings
) -> dict[str, Any]:
    now = utcnow()
    try:
        at = fix_time(body, now=now, max_future_s=settings.position_max_future_s)
    except ValueError as exc:
        raise ApiError(422, "invalid_field", f"at {exc}", "at") from exc
    event = UnitPosition(
        district=who.extra["district"], unit_id=who.team_id or "", lat=body.lat, lon=body.lon,
        accuracy_m=body.accuracy_m, at=at,
    )
    result = await positions.write(event, member_id=who.member_id or "", now=now)
    if result == teams_store.POSITION_OFF_DUTY:
        raise conflict("the team is off_duty: positions are kept only on shift; allowed: "
                       "start a shift (POST /v1/me/shift/start) first")
    out: dict[str, Any] = {"accepted": result >= teams_store.POSITION_STORED,
                           "published": result == teams_store.POSITION_PUBLISHED}
    if result == teams_store.POSITION_STALE:
        out["reason"] = "older than the team's latest fix"
    return out


def _invalid(exc: ValidationError) -> ApiError:
    err = exc.errors(include_url=False, include_input=False)[0]
    path = ".".join(str(p) for p in err["loc"]) or "(body)"
    if err["type"] == "model_type" or path == "(body)":
        return ApiError(422, "bad_body", "the request body must be a JSON object", "(body)")
    message = _MESSAGES.get(err["type"], err.get("msg", "is invalid"))
    return ApiError(422, "invalid_field", f"{path} {message}", path)


class PositionFastPath:
    """Answers `PUT /v1/me/position` itself; passes everything else on."""

    def __init__(self, app: ASGIApp, *, positions: PositionWriter, settings: Settings) -> None:
        self.app = app
        self._positions = positions
        self._settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "PUT":
            await self.app(scope, receive, send)
            return
        try:
            payload = await self._handle(scope, receive)
            status = 200
        except ApiError as exc:
            payload, status = error_body(exc.code, exc.message, exc.field), exc.status
        body = json.dumps(payload, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        who: Principal = scope["state"]["principal"]
        raw = await _read(receive)
        if who.kind != "device":
            raise ApiError(403, "forbidden", "this endpoint is for device tokens")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "bad_json", "the request body is not valid JSON") from exc
        try:
            fix = PositionIn.model_validate(data)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        return await accept_position(fix, who, positions=self._positions,
                                     settings=self._settings)


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
