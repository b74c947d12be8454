"""The device WebSocket `/v1/devices/stream`: orders out; receipts and responses in.

Bad frames, and frames Redis could not take, get an error frame and never close the
socket; frames are capped in size and rate. The socket's token is re-checked now and then;
a revoked device is closed at once by the `device.revoked` fan-out (see hub.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.http import (
    STORE_AWAY,
    ApiError,
    InputFirstRoute,
    Principal,
    bearer_token,
    describe_away,
    refusal_cause,
    socket_subprotocol,
)
from shared.introspect import IntrospectionUnavailable, Introspector
from shared.metrics import meter

from . import store
from .config import Settings
from .domain.frames import (
    DeviceFrame,
    FrameError,
    Holding,
    Ping,
    RateLimiter,
    Received,
    RespondFrame,
    WarningRead,
    order_id_of,
    parse_frame,
)
from .hub import (
    CLOSE_FORBIDDEN,
    CLOSE_REVOKED,
    CLOSE_TEAM_CHANGED,
    CLOSE_TRY_LATER,
    Connection,
    Hub,
    NotSubscribed,
)
from .service import Orders

log = logging.getLogger(__name__)

CONNECTIONS = meter("notify").create_up_down_counter(
    "lianfang.notify.websocket_connections", description="device sockets open")


def build_socket_router(*, redis: Redis, hub: Hub, orders: Orders, introspector: Introspector,
                        settings: Settings) -> APIRouter:
    router = APIRouter(route_class=InputFirstRoute)

    @router.websocket("/v1/devices/stream")
    async def device_stream(ws: WebSocket) -> None:
        who: Principal = ws.scope["state"]["principal"]
        await ws.accept(subprotocol=socket_subprotocol(ws.scope))  # never the token's
        if who.kind != "device" or not who.team_id:
            # Accepted first, so the page can tell "wrong kind of token" from "no token".
            await ws.close(CLOSE_FORBIDDEN, "device tokens of a team only")
            return
        conn = Connection(ws, who, queue_size=settings.send_queue)
        writer = asyncio.create_task(conn.write_loop(), name=f"ws-writer-{conn.device_id}")
        heartbeat: asyncio.Task[None] | None = None
        CONNECTIONS.add(1)
        try:
            # The set-up's Redis waits are bounded, as a request's are (AnswerWithin); the
            # socket's life is not. A Redis that stops answering without going away (frozen,
            # its disk stalled) held the device here for about a minute, to no purpose.
            try:
                async with asyncio.timeout(settings.request_timeout_s):
                    filed = await store.touch_device(
                        redis, device_id=conn.device_id, member_id=conn.member_id,
                        team_id=conn.team_id, agency_kind=who.agency_kind,
                        district=who.districts[0] if who.districts else None,
                        checked_at=who.checked_at,
                    )
                    if filed is not None and filed != conn.team_id:
                        # Its token was checked before the member's move was applied here:
                        # the device stays on the new team, and the socket is closed as the
                        # move closes the member's sockets (4409), to reconnect with its token
                        # checked again, not a cached answer of the team the member left.
                        introspector.forget_device(conn.device_id)
                        conn.close(CLOSE_TEAM_CHANGED, "the device's team changed; reconnect")
                        return
                    # Heard by the team's fan-out from here on: an order pushed before the
                    # `hello` is queued waits behind it (Connection.greet); the replay reads
                    # after the attach.
                    await hub.attach(conn)
                    conn.greet({
                        "type": "hello", "device_id": conn.device_id,
                        "member_id": conn.member_id, "member_name": who.extra.get("member_name"),
                        "team_id": conn.team_id, "ping_interval_s": settings.ping_interval_s,
                    })
                    try:
                        await hub.replay(conn)
                    except STORE_AWAY:
                        raise
                    except RedisError as exc:  # the socket stays: its heartbeat replays again
                        log.error("replay for device %s failed: %s", conn.device_id, exc)
            except TimeoutError:
                log.warning("device %s not connected: Redis gave no answer within %g s",
                            conn.device_id, settings.request_timeout_s)
                conn.close(CLOSE_TRY_LATER, "try again later")
                return
            heartbeat = asyncio.create_task(
                _heartbeat(conn, hub=hub, introspector=introspector, settings=settings,
                           token=bearer_token(ws.scope) or ""),
                name=f"ws-heartbeat-{conn.device_id}",
            )
            await _read(conn, orders=orders, hub=hub, settings=settings)
        except WebSocketDisconnect:
            pass
        except STORE_AWAY as exc:  # while connecting: the device tries again shortly
            log.warning("device %s not connected: Redis %s (%s)", conn.device_id,
                        describe_away(exc), type(exc).__name__)
            conn.close(CLOSE_TRY_LATER, "try again later")
        except NotSubscribed as exc:  # the page reconnects after 1013, as above
            log.warning("device %s not connected: %s", conn.device_id, exc)
            conn.close(CLOSE_TRY_LATER, "try again later")
        finally:
            CONNECTIONS.add(-1)
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            await hub.detach(conn)
            conn.close(1000, "bye")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, timeout=2)
            if not writer.done():
                writer.cancel()

    return router


async def _read(conn: Connection, *, orders: Orders, hub: Hub, settings: Settings) -> None:
    limiter = RateLimiter(rate=settings.frame_rate_per_s, burst=settings.frame_burst,
                          now=time.monotonic())
    while not conn.closing:
        message = await conn.ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        if not limiter.allow(time.monotonic()):
            # The page sends a refused receipt or answer again; a receipt is also asked for
            # again by the heartbeat (the order sent again).
            refused = _parsed_or_none(raw, max_bytes=settings.max_frame_bytes)
            about = refused.order_id if isinstance(refused, Received | RespondFrame) else None
            if isinstance(refused, Received):
                conn.receipt_refused(refused.order_id)
            conn.offer(FrameError("rate_limited", "too many frames; slow down").frame(about))
            continue
        try:
            frame = parse_frame(raw, max_bytes=settings.max_frame_bytes)
        except FrameError as exc:
            conn.offer(exc.frame(order_id_of(raw) if exc.code == "invalid_field" else None))
            continue
        if isinstance(frame, Ping):
            conn.offer({"type": "pong"})
        elif isinstance(frame, Holding):
            try:
                await hub.holding(conn, frame.order_ids)
            except RedisError as exc:  # the next heartbeat's replay tells it
                log.warning("holding frame of device %s not checked: %s", conn.device_id,
                            type(exc).__name__)
        elif isinstance(frame, WarningRead):
            try:
                await hub.read_warning(conn, frame.order_id)
            except RedisError as exc:  # warned again at its next connect: it reads it again
                log.warning("warning_read of device %s not kept: %s", conn.device_id,
                            type(exc).__name__)
        elif isinstance(frame, Received):
            try:
                await orders.confirm_received(order_id=frame.order_id, who=conn.who,
                                              channel="websocket")
            except ApiError as exc:
                conn.receipt_taken(frame.order_id)  # refused for good: not asked again
                conn.offer(FrameError(exc.code, exc.message, exc.field).frame(frame.order_id))
            except RedisError as exc:
                conn.receipt_refused(frame.order_id)
                conn.offer(_store_away(exc).frame(frame.order_id))
            else:
                conn.receipt_taken(frame.order_id)
        elif isinstance(frame, RespondFrame):
            try:
                view = await orders.respond(order_id=frame.order_id, who=conn.who,
                                            response=frame.response, note=frame.note,
                                            evidence=frame.evidence,
                                            origin=conn.conn_id)
            except ApiError as exc:
                conn.offer(FrameError(exc.code, exc.message, exc.field).frame(frame.order_id))
            except RedisError as exc:
                conn.offer(_store_away(exc).frame(frame.order_id))
            else:
                conn.told_state(frame.order_id, view["state"])
                conn.offer({"type": "order_state", "order_id": frame.order_id,
                            "state": view["state"], "answered": view["answered"],
                            "response": frame.response})


def _parsed_or_none(raw: str | bytes, *, max_bytes: int) -> DeviceFrame | None:
    try:
        return parse_frame(raw, max_bytes=max_bytes)
    except FrameError:
        return None


def _store_away(exc: RedisError) -> FrameError:
    """A frame that could not be recorded now: the device keeps its socket and sends it
    again (nothing was written: each write is one script). Redis away, or refusing for a
    while (a failover's READONLY, OOM, a busy script): any Redis error answers a frame,
    never closes its socket."""
    if isinstance(exc, STORE_AWAY):
        log.warning("a device frame not recorded: Redis %s (%s)", describe_away(exc),
                    type(exc).__name__)
    else:
        log.error("a device frame not recorded: Redis refused it (%s: %s)",
                  type(exc).__name__, exc)
    if (cause := refusal_cause(exc)) is not None:
        return FrameError("unavailable",
                          f"the store is not taking writes now ({cause}); send it again")
    return FrameError("unavailable", "the store is not answering; send it again")


def _first_beat_after(interval_s: float) -> float:
    """A socket's phase: when, after it connects, its first heartbeat comes."""
    return random.uniform(0, interval_s)


async def _heartbeat(conn: Connection, *, hub: Hub, introspector: Introspector,
                     settings: Settings, token: str) -> None:
    """Pings, replays what Pub/Sub may have lost, and re-checks the token now and then.

    Each socket beats at its own phase: the first beat comes after a random part of the
    interval. Sockets that connected together (every phone reconnecting after notify
    restarts, or the benchmark's 400) would otherwise beat in step for as long as they
    stay: 400 replays at once every interval and 400 introspection requests to volunteers
    within a few seconds every second beat, which the benchmark saw as its slowest runs."""
    last_auth = time.monotonic()
    wait_s = _first_beat_after(settings.ping_interval_s)
    while not conn.closing:
        await asyncio.sleep(wait_s)
        wait_s = settings.ping_interval_s
        conn.offer({"type": "ping"})
        try:
            await hub.replay(conn)
        except Exception as exc:  # Redis away: the socket stays, the next beat tries again
            log.warning("replay for device %s failed: %s", conn.device_id, type(exc).__name__)
        if time.monotonic() - last_auth < settings.reauth_interval_s:
            continue
        last_auth = time.monotonic()
        try:
            who = await introspector.resolve(token, fresh=True)
        except IntrospectionUnavailable:
            continue  # neither yes nor no: keep the socket
        if who is None:
            conn.close(CLOSE_REVOKED, "device revoked")
        elif who.team_id != conn.team_id or (who.agency_kind == "police") != conn.police:
            # another team, or its agency another kind (police to security: the socket
            # decided at connect that its member may read a police order's caller)
            conn.close(CLOSE_TEAM_CHANGED, "the device's team or agency changed; reconnect")

