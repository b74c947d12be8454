"""The benchmark's command counter (tools.benchmarks.monitor) against a real MONITOR: the
commands each named client sends, scripts' own commands left out, its own not counted."""

from __future__ import annotations

import redis

from tools.benchmarks.monitor import CommandCounter, parse_line


def test_a_monitor_line_gives_the_client_and_the_command() -> None:
    assert parse_line(b'1796437258.123456 [0 127.0.0.1:40000] "evalsha" "ab" "1" "k"') == (
        "127.0.0.1:40000", "EVALSHA")
    assert parse_line(b'1796437258.123456 [0 lua] "HSET" "k" "f" "v"') == ("lua", "HSET")
    assert parse_line(b"OK") is None


def test_commands_are_counted_by_the_name_of_the_client_that_sent_them(clean_redis: str) -> None:
    intake = redis.Redis.from_url(clean_redis, client_name="intake")
    other = redis.Redis.from_url(clean_redis)
    intake.ping()  # connected (and named) before counting starts
    counter = CommandCounter(clean_redis)
    counter.start()
    try:
        for i in range(3):
            intake.set(f"k{i}", "v")
        intake.eval("redis.call('SET', KEYS[1], 'x'); return redis.call('GET', KEYS[1])", 1, "s")
        other.get("k0")
    finally:
        sent = counter.stop()
        intake.close()
        other.close()
    assert sent["intake"] == {"SET": 3, "EVAL": 1}  # not the script's own SET and GET
    assert sent["?"]["GET"] == 1  # an unnamed client
    assert "bench-monitor" not in sent
