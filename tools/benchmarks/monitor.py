"""Which service sends Redis which commands: MONITOR, counted by the connections' names.

Every service names its connections after itself (`shared.bus`: CLIENT SETNAME), so MONITOR's
client address leads to a service through CLIENT LIST. Commands that scripts run count as
the script's own (MONITOR shows them as `lua`; they are left out). Round trips cannot be
read off exactly (a pipeline sends several commands at once), but the count is the same on
any machine and at any speed, unlike CPU time on a VM that drifts: the way to show that a
change cut a service's commands. MONITOR costs Redis much more than the commands it shows,
so CPU figures taken while it runs are not comparable with any others.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import Counter

import redis

_LINE = re.compile(rb'^[\d.]+ \[\d+ ([^\]]*)\] "([^"]*)"')
_OWN_NAME = "bench-monitor"


def parse_line(line: bytes) -> tuple[str, str] | None:
    """(client address or 'lua', command name in capitals) of one MONITOR line."""
    m = _LINE.match(line)
    if m is None:
        return None
    return m.group(1).decode(), m.group(2).decode(errors="replace").upper()


class CommandCounter:
    """Counts, from `start` to `stop`, the commands each named client sends."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._counts: Counter[tuple[str, str]] = Counter()  # (address, command)
        self._stop_marker: bytes | None = None  # the ECHO that ends the count
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._names: dict[str, str] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("MONITOR did not start")
        self._names = self._client_names()

    def _client_names(self) -> dict[str, str]:
        client = redis.Redis.from_url(self._url, client_name=_OWN_NAME)
        try:
            return {c["addr"]: c.get("name") or "?" for c in client.client_list()}
        finally:
            client.close()

    def _run(self) -> None:
        client = redis.Redis.from_url(self._url, client_name=_OWN_NAME)
        with client.monitor() as monitor:
            self._started.set()
            while True:
                reply = monitor.connection.read_response()
                marker = self._stop_marker
                if marker is not None and isinstance(reply, bytes) and marker in reply:
                    break  # MONITOR shows commands in the order Redis ran them: all are in
                parsed = parse_line(reply) if isinstance(reply, bytes) else None
                if parsed is not None and parsed[0] != "lua":
                    self._counts[parsed] += 1
        client.close()

    def stop(self) -> dict[str, Counter[str]]:
        """The commands sent meanwhile, by service (client name; '?' for unnamed ones).

        Counting ends at an ECHO of a marker this sends last: every command Redis ran before
        it has been read by then (a flag set here instead could stop the reader before it
        had read the last of them, and a command sent just before `stop` went uncounted)."""
        names = {**self._names, **self._client_names()}
        self._stop_marker = f"{_OWN_NAME}-stop-{secrets.token_hex(8)}".encode()
        client = redis.Redis.from_url(self._url, client_name=_OWN_NAME)
        try:
            client.echo(self._stop_marker)
        finally:
            client.close()
        if self._thread is not None:
            self._thread.join(10)
        by_service: dict[str, Counter[str]] = {}
        for (address, command), n in self._counts.items():
            name = names.get(address, "?")  # a connection closed meanwhile: unknown
            if name == _OWN_NAME:
                continue
            by_service.setdefault(name, Counter())[command] += n
        return by_service
