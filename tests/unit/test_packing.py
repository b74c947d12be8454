"""shared.packing: hiredis packs the bytes redis-py's own asyncio packer would."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import DataError

from shared.packing import connection_class

COMMANDS = [
    ("PING",),
    ("CLIENT SETNAME", "dispatch-1"),
    (b"CONFIG GET", b"maxmemory"),
    ("HSET", "incident:abc", "address", "上海市 黄浦区 南京东路 1 号", "lat", 31.2354,
     "lon", -121.0, "misses", 0, "seq", 2**70, "tiny", 1e-20, "caller", ""),
    ("EVALSHA", "a" * 40, 3, "k1", "k2", "k3", *(f"v{i}" * i for i in range(60))),
    ("XADD", "s", "MAXLEN", "~", "1000", "*", "__data__", bytes(range(256)) * 40),
    ("SET", "k", bytearray(b"from a bytearray")),
    ("SET", "k", memoryview(b"from a memoryview")),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0]))
def test_commands_pack_to_the_same_bytes_as_redis_pys_packer(args: tuple) -> None:
    ours = connection_class("redis://127.0.0.1:6379/0")()
    theirs = Connection()
    assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))


def test_a_pipeline_packs_to_the_same_bytes() -> None:
    ours = connection_class("redis://127.0.0.1:6379/0")()
    assert b"".join(ours.pack_commands(COMMANDS)) == b"".join(
        Connection().pack_commands(COMMANDS))


@pytest.mark.parametrize("value", [True, None, object()])
def test_values_redis_py_refuses_are_still_refused(value: object) -> None:
    with pytest.raises(DataError):
        connection_class("redis://h")().pack_command("SET", "k", value)


def test_another_text_encoding_is_packed_by_redis_py() -> None:
    ours = connection_class("redis://h")(encoding="gbk")
    theirs = Connection(encoding="gbk")
    assert ours.pack_command("SET", "k", "联防") == theirs.pack_command("SET", "k", "联防")


@pytest.mark.parametrize(("url", "base"), [
    ("redis://u:p@127.0.0.1:6379/0", Connection),
    ("rediss://u:p@redis.example:6380/0", SSLConnection),
    ("unix:///run/redis.sock?db=0", UnixDomainSocketConnection),
])
def test_the_url_scheme_still_chooses_the_transport(url: str, base: type) -> None:
    cls = connection_class(url)
    assert issubclass(cls, base) and cls is connection_class(url)
