"""The end-to-end journeys' wait for dispatch to see the district's teams: a busy dispatch's
503 is waited through (it ended the journey with a KeyError), and the wait that runs out
says what dispatch last answered. Against a small HTTP server answering as dispatch's
GET /v1/units does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.e2e.journey import wait_until_dispatch_sees
from tools.stack import Stack

PLACED = {"units": [{"team_id": "t1", "position": {"lat": 22.8, "lon": 108.3}}]}


class Dispatch:
    """Answers GET /v1/units with each of `answers` in turn (status, body), the last for
    ever after."""

    def __init__(self, answers: list[tuple[int, dict[str, object]]]) -> None:
        self.answers = answers
        self.asked = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                status, body = server.answers[min(server.asked, len(server.answers) - 1)]
                server.asked += 1
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def stack(self, tmp_path: Path) -> Stack:
        return Stack("redis://unused", "token", tmp_path, ports={"dispatch": self.http.server_port})

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def busy() -> Iterator[Dispatch]:
    dispatch = Dispatch([(503, {"detail": "busy"}), (503, {"detail": "busy"}), (200, PLACED)])
    yield dispatch
    dispatch.close()


@pytest.fixture
def unavailable() -> Iterator[Dispatch]:
    dispatch = Dispatch([(503, {"detail": "redis unavailable"})])
    yield dispatch
    dispatch.close()


async def test_a_503_is_waited_through(busy: Dispatch, tmp_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        await wait_until_dispatch_sees(client, busy.stack(tmp_path), "qingxiu", 1)
    assert busy.asked == 3


async def test_the_deadline_says_the_last_status_and_body(unavailable: Dispatch,
                                                          tmp_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(AssertionError) as failed:
            await wait_until_dispatch_sees(client, unavailable.stack(tmp_path), "qingxiu", 1,
                                           timeout=0.5)
    assert "503" in str(failed.value)
    assert "redis unavailable" in str(failed.value)
