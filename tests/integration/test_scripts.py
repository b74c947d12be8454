"""ScriptBatch against a real Redis: concurrent calls share one round trip, each gets its
own reply or its own error, and a Redis that lost its scripts gets their text again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from shared.jsontext import ascii_json
from shared.scripts import ScriptBatch, run_script

ECHO = "redis.call('INCR', KEYS[1]); return ARGV[1]"
FAILS = "return redis.error_reply('no such team: ' .. ARGV[1])"


@pytest.fixture
async def client(clean_redis: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(clean_redis, decode_responses=True)
    yield redis
    await redis.aclose()


def counting(batch: ScriptBatch) -> list[int]:
    """The sizes of the pipelines the batch sends."""
    sizes: list[int] = []
    send = batch._pipeline

    async def spy(calls, *, by_digest):  # type: ignore[no-untyped-def]
        sizes.append(len(calls))
        return await send(calls, by_digest=by_digest)

    batch._pipeline = spy  # type: ignore[method-assign]
    return sizes


async def test_calls_made_in_one_turn_share_one_pipeline_each_with_its_reply(
        client: aioredis.Redis) -> None:
    await client.script_load(ECHO)
    batch = ScriptBatch(client)
    sizes = counting(batch)
    replies = await asyncio.gather(*(run_script(batch, ECHO, ["n"], [f"r{i}"])
                                     for i in range(20)))
    assert replies == [f"r{i}" for i in range(20)]
    assert await client.get("n") == "20"
    assert sizes == [20]


async def test_a_lone_call_is_sent_at_once(client: aioredis.Redis) -> None:
    await client.script_load(ECHO)
    batch = ScriptBatch(client)
    sizes = counting(batch)
    assert await asyncio.wait_for(run_script(batch, ECHO, ["n"], ["alone"]), 1) == "alone"
    assert await run_script(batch, ECHO, ["n"], ["next"]) == "next"
    assert sizes == [1, 1]


async def test_a_failing_script_fails_only_its_own_call(client: aioredis.Redis) -> None:
    batch = ScriptBatch(client)
    results = await asyncio.gather(run_script(batch, ECHO, ["n"], ["before"]),
                                   run_script(batch, FAILS, [], ["t7"]),
                                   run_script(batch, ECHO, ["n"], ["after"]),
                                   return_exceptions=True)
    assert results[0] == "before" and results[2] == "after"
    assert isinstance(results[1], ResponseError) and "no such team: t7" in str(results[1])
    assert await client.get("n") == "2"


async def test_scripts_lost_by_redis_are_sent_again_by_their_text(
        client: aioredis.Redis) -> None:
    batch = ScriptBatch(client)
    sizes = counting(batch)
    await client.script_load(ECHO)
    assert await run_script(batch, ECHO, ["n"], ["first"]) == "first"
    await client.script_flush()  # what a restarted Redis without the scripts looks like
    replies = await asyncio.gather(*(run_script(batch, ECHO, ["n"], [f"r{i}"])
                                     for i in range(3)))
    assert replies == ["r0", "r1", "r2"]
    assert await client.get("n") == "4"  # each ran once: NOSCRIPT ran nothing
    assert sizes == [1, 3, 3]  # by digest, then the three again by text


async def test_a_connection_error_fails_every_call_of_the_batch() -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    batch = ScriptBatch(dead)
    results = await asyncio.gather(*(run_script(batch, ECHO, ["n"], ["x"]) for _ in range(3)),
                                   return_exceptions=True)
    await dead.aclose()
    assert all(isinstance(r, RedisConnectionError) for r in results), results


# What a script's Lua reads from ascii_json's text, written back as Redis stores it.
DECODED = """
local v = cjson.decode(ARGV[1])
return {v.text, v.list[1], v.list[2], tostring(v.ratio), tostring(v.tiny), tostring(v.flag)}
"""


@pytest.mark.parametrize("text", [
    "人民路 12 号", "emoji 🚓 and a quote \" and a \\ backslash", "line\nbreak\u2028",
])
async def test_ascii_json_reads_in_lua_as_json_dumps_did(client: aioredis.Redis,
                                                          text: str) -> None:
    value = {"text": text, "list": ["police", ""], "ratio": 1.4, "tiny": 1e-05, "flag": True}
    new, old = (await asyncio.gather(*(
        client.eval(DECODED, 0, encoded) for encoded in (ascii_json(value),
                                                         json.dumps(value)))))
    assert new == old
    assert new[0] == text  # Redis stores what Lua decoded: the text's UTF-8
    assert new[1:] == ["police", "", "1.4", "1e-05", "true"]


def test_ascii_json_leaves_what_pydantic_core_cannot_encode_to_json() -> None:
    value = {"text": "lone \ud800 surrogate"}
    assert ascii_json(value) == json.dumps(value).encode()
