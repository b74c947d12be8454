"""Device tokens, resolved by asking volunteers (their owner); answers are cached about a second.
Notify (the devices' sockets and answers) and intake (a member's report from the street) use it.

A revoked token must stop working at once, so nothing is cached for longer than
`introspect_cache_s`, and a `device.revoked` event drops a device's entries at once (notify);
a service that does not read `device.revoked` resolves with `fresh=True` (intake).
Tokens are kept only as SHA-256 digests, never logged.
"""

from __future__ import annotations

import hashlib
import logging
import time

import httpx
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from shared.http import Principal, error_body
from shared.tokens import DEVICE_TOKEN_PREFIX

log = logging.getLogger(__name__)



class IntrospectionUnavailable(Exception):
    """Volunteers did not answer: neither yes nor no, so the caller should retry."""


class Introspector:
    def __init__(self, client: httpx.AsyncClient, *, base_url: str, cache_s: float,
                 timeout_s: float) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/v1/devices/introspect"
        self._cache_s = cache_s
        self._timeout = timeout_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def resolve(self, token: str, *, fresh: bool = False) -> Principal | None:
        """The device's principal, None for an unknown or revoked token. A token without
        the device tokens' prefix is none of volunteers' (a system key, a desk token,
        garbage): unknown at once, not a round trip, nor a 503 while volunteers is away."""
        if not token.startswith(DEVICE_TOKEN_PREFIX):
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and not fresh and cached[0] > now:
            return cached[1]
        # Volunteers read its roster somewhere between the question and the answer: its
        # answer vouches for the member's team as of the question, no later.
        asked_at = time.time()
        try:
            response = await self._client.get(
                self._url, headers={"Authorization": f"Bearer {token}"}, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            log.warning("device introspection failed: %s", type(exc).__name__)
            raise IntrospectionUnavailable from exc
        if response.status_code in (401, 403, 404):
            principal = None
        elif response.status_code == 200:
            principal = _principal(response.json(), checked_at=asked_at)
        else:
            log.warning("device introspection answered %s", response.status_code)
            raise IntrospectionUnavailable
        self._prune(now)
        self._cache[digest] = (now + self._cache_s, principal)
        return principal

    def forget_device(self, device_id: str) -> None:
        for digest, (_, who) in list(self._cache.items()):
            if who is not None and who.device_id == device_id:
                self._cache.pop(digest, None)

    def _prune(self, now: float) -> None:
        if len(self._cache) > 10_000:
            for digest, (expires, _) in list(self._cache.items()):
                if expires <= now:
                    self._cache.pop(digest, None)


def _principal(data: dict[str, object], *, checked_at: float) -> Principal | None:
    try:
        device_id = str(data["device_id"])
        member_id = str(data["member_id"])
        team_id = data.get("team_id")
    except (KeyError, TypeError):
        log.warning("device introspection answered without device_id/member_id")
        return None
    district = data.get("district")
    return Principal(
        kind="device",
        subject=device_id,
        member_id=member_id,
        team_id=str(team_id) if team_id else None,
        agency_id=str(data["agency_id"]) if data.get("agency_id") else None,
        agency_kind=str(data["agency_kind"]) if data.get("agency_kind") else None,
        districts=(str(district),) if district else (),
        device_id=device_id,
        # The member's own name, for their own page: never logged.
        extra={"member_name": data.get("member_name")},
        checked_at=checked_at,
    )


CLOSE_TRY_LATER = 1013  # WebSocket close code: try again later


class IntrospectionGuard:
    """Volunteers not answering is neither yes nor no: 503 (HTTP) or 1013 (WebSocket), not 401."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except IntrospectionUnavailable:
            response = JSONResponse(
                error_body("unavailable", "device tokens cannot be checked right now; retry"),
                status_code=503, headers={"Retry-After": "2"},
            )
            if scope["type"] == "websocket":
                ws = WebSocket(scope, receive, send)
                if "websocket.http.response" in scope.get("extensions", {}):
                    await ws.send_denial_response(response)  # the handshake answers 503
                else:
                    await ws.close(CLOSE_TRY_LATER, "token check unavailable")
                return
            await response(scope, receive, send)
