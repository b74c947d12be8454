"""Redis commands packed by hiredis's C packer.

redis-py's synchronous client packs commands with `hiredis.pack_command` when hiredis is
installed; its asyncio connections always pack in Python, one bytes join per argument. Our
scripts carry tens of arguments (an incident's fields, an event's envelope), and that join
was ~7 % of dispatch's CPU under load (docs/benchmarks.md). The connection classes here
pack exactly the same bytes, seven times faster. `connection_class(url)` keeps the class
the URL's scheme would choose (TCP, TLS, Unix socket) and only changes the packing.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, Connection, parse_url


class _HiredisPacking(AbstractConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        encoder = self.encoder
        if encoder.encoding != "utf-8" or encoder.encoding_errors != "strict":
            return super().pack_command(*args)  # hiredis encodes text as strict UTF-8 only
        # As redis-py's packers: a command name given with its subcommand ("CLIENT SETNAME")
        # goes as separate arguments.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            # bytearray and memoryview values (hiredis takes bytes), or a value redis-py
            # refuses (bool, None): its own packer converts or raises DataError.
            return super().pack_command(*args)


@cache
def _packing(base: type[AbstractConnection]) -> type[AbstractConnection]:
    return type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})


def connection_class(url: str) -> type[AbstractConnection]:
    """The connection class for `url`: the one redis-py would use, packing with hiredis."""
    return _packing(parse_url(url).get("connection_class", Connection))

