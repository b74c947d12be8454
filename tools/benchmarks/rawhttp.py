"""A lean HTTP/1.1 keep-alive client for load generation.

httpx costs a few hundred microseconds of CPU per request; on a two-core machine that CPU is
taken from the services being measured. This client writes pre-encoded requests on plain
asyncio protocols and parses only the status line and Content-Length, so the same load costs
the load generator several times less. It serves one request at a time per connection (no
pipelining) and reconnects after errors. Responses must carry Content-Length (uvicorn's do).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class HttpError(Exception):
    pass


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False
        self.used = False  # has carried a request already (kept alive)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {exc!r}"))
        self.waiter = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        if at < 0:
            waiter.set_exception(HttpError("response without Content-Length"))
            self.close()
            return
        stop = head.find(b"\r\n", at)
        length = int(head[at + 15: stop if stop > 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4: total])
        del self.buffer[:total]
        self.waiter = None
        waiter.set_result((status, body))

    def send(self, request: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = loop.create_future()
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def encode_request(method: str, host: str, path: str, *, token: str | None = None,
                   body: bytes | None = None, extra: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n").encode() + extra + b"\r\n"
    return head + (body or b"")


class Pool:
    """Up to `size` keep-alive connections to one host; a request waits for a free one."""

    def __init__(self, host: str, port: int, *, size: int, timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.size = size
        self.timeout_s = timeout_s
        self._idle: deque[_Connection] = deque()
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def _acquire(self, fresh: bool = False) -> _Connection:
        while True:
            while self._idle and not fresh:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
                self._open -= 1
            if fresh and self._idle and self._open >= self.size:
                self._idle.pop().close()  # make room for the new connection
                self._open -= 1
            if self._open < self.size:
                self._open += 1
                try:
                    loop = asyncio.get_running_loop()
                    _, conn = await loop.create_connection(_Connection, self.host, self.port)
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
                return conn
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)  # _wake pops it: no O(n) removal on the busy path
            try:
                await waiter
            except BaseException:
                if waiter.done():
                    self._wake()  # woken but leaving: pass the turn on
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _release(self, conn: _Connection) -> None:
        if conn.closed:
            self._open -= 1
        else:
            self._idle.append(conn)
        self._wake()

    @property
    def busy(self) -> int:
        """Connections open and not idle: requests under way."""
        return self._open - len(self._idle)

    async def request(self, request: bytes) -> tuple[int, bytes]:
        """Sends one pre-encoded request; (status, body). Raises HttpError or TimeoutError.
        A kept-alive connection the server closed meanwhile is retried once on a new one,
        as HTTP clients do."""
        conn = await self._acquire()
        reused = conn.used
        try:
            return await self._exchange(conn, request)
        except HttpError:
            if not reused:
                raise
        return await self._exchange(await self._acquire(fresh=True), request)

    async def _exchange(self, conn: _Connection, request: bytes) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        conn.used = True
        future = conn.send(request, loop)
        timer = loop.call_later(self.timeout_s, _expire, future)
        try:
            return await future
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()
            self._release(conn)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


def _expire(future: asyncio.Future[tuple[int, bytes]]) -> None:
    if not future.done():
        future.set_exception(TimeoutError("no response in time"))
