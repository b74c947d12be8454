"""Issue #6: malformed payloads never stop a consumer.

Hypothesis writes entries to every stream a service reads: random JSON objects, events with
a field of the wrong type, events missing fields, events with a huge string, random bytes,
each as FastStream's envelope (with random headers), as bare bytes or as raw stream fields.
After each example the service's groups must have read and settled every entry (processed
or dead-lettered, nothing left pending); after all of them the service still processes a
valid event on each stream and answers /readyz with 200.

The service runs in-process, on an event loop of its own thread, so that Hypothesis drives
plain synchronous examples (shrinking and its failure report work as usual).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared import streams
from tests.helpers import poll_until
from tests.integration.stream_probes import (
    SAMPLES,
    SCENARIOS,
    Service,
    as_json,
    envelope,
    plain_step,
    running,
)

T = TypeVar("T")
EXAMPLES = 50  # per service; each writes up to 6 entries to the service's streams
SETTLE_S = 20.0  # a handler that fails on a valid-looking event is retried, then dead-lettered

json_leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
               | st.text(max_size=40))
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12,
)


@st.composite
def bodies(draw: st.DrawFn, stream: str) -> bytes:
    """What an entry's body holds: never quite the event the stream carries."""
    sample = as_json(SAMPLES[stream])
    keys = sorted(sample)
    kind = draw(st.sampled_from(["random object", "wrong type", "missing fields", "huge string",
                                 "random bytes", "not an object"]))
    if kind == "random object":
        return json.dumps(draw(st.dictionaries(st.text(max_size=20), json_values,
                                               max_size=8))).encode()
    if kind == "wrong type":
        key = draw(st.sampled_from(keys))
        value = draw(json_values.filter(lambda v: type(v) is not type(sample[key])))
        return json.dumps({**sample, key: value}).encode()
    if kind == "missing fields":
        gone = draw(st.lists(st.sampled_from(keys), min_size=1, unique=True))
        return json.dumps({k: v for k, v in sample.items() if k not in gone}).encode()
    if kind == "huge string":
        key = draw(st.sampled_from(keys))
        size = draw(st.sampled_from([70_000, 1_000_000]))
        return json.dumps({**sample, key: draw(st.sampled_from("x界\x00")) * size}).encode()
    if kind == "random bytes":
        return draw(st.binary(max_size=512))
    return json.dumps(draw(json_leaves | st.lists(json_values, max_size=3))).encode()


@st.composite
def entries(draw: st.DrawFn, stream: str) -> dict[bytes, bytes] | tuple[bytes, dict[str, str]]:
    """The entry's fields, or (body, headers) to wrap in FastStream's envelope."""
    how = draw(st.sampled_from(["envelope", "bare bytes", "raw fields"]))
    if how == "raw fields":
        return draw(st.dictionaries(st.binary(min_size=1, max_size=16), st.binary(max_size=64),
                                    min_size=1, max_size=4))
    body = draw(bodies(stream))
    if how == "bare bytes":
        return {b"__data__": body}
    headers = draw(st.dictionaries(st.text(max_size=16), st.text(max_size=40), max_size=4)
                   | st.just({"content-type": "application/json"}))
    return body, headers


class LoopThread:
    """An event loop on a thread of its own, for running coroutines from synchronous code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="service-loop",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def service_thread(request: pytest.FixtureRequest, clean_redis: str) -> Iterator[
        tuple[LoopThread, Service]]:
    """The service under test, running in-process on its own loop."""
    thread = LoopThread()
    ready: concurrent.futures.Future[Service] = concurrent.futures.Future()
    stop = asyncio.Event()

    async def hold() -> None:
        try:
            async with running(request.param, clean_redis, max_deliveries=2) as svc:
                ready.set_result(svc)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    held = asyncio.run_coroutine_threadsafe(hold(), thread.loop)
    try:
        yield thread, ready.result(30)
    finally:
        thread.loop.call_soon_threadsafe(stop.set)
        held.result(30)
        thread.close()


@pytest.mark.parametrize("service_thread", sorted(SCENARIOS), indirect=True)
def test_malformed_payloads_never_stop_a_consumer(
        service_thread: tuple[LoopThread, Service]) -> None:
    thread, svc = service_thread
    consumed = [s.name for s in streams.consumed_by(svc.name)]

    async def write(batch: list[tuple[str, Any]]) -> None:
        for stream, entry in batch:
            if isinstance(entry, tuple):
                body, headers = entry
                entry = {b"__data__": await envelope(body, headers)}
            await svc.redis.xadd(stream, entry)

    async def settled() -> None:
        await poll_until(svc.all_drained, f"{svc.name} settling every malformed entry",
                         timeout=SETTLE_S, interval=0.1)

    # No shrinking: an entry that breaks a consumer stays in Redis and fails every later
    # example too, so the first failing example, reported as is, is the culprit.
    @settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
              phases=[Phase.explicit, Phase.reuse, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example,
                                     HealthCheck.function_scoped_fixture])
    @given(st.lists(st.sampled_from(consumed).flatmap(
        lambda stream: st.tuples(st.just(stream), entries(stream))), min_size=1, max_size=6))
    def malformed_entries_are_settled(batch: list[tuple[str, Any]]) -> None:
        thread.run(write(batch))
        thread.run(settled(), timeout=SETTLE_S + 10)
        assert thread.run(svc.ready()), f"{svc.name} not ready after malformed entries"

    malformed_entries_are_settled()
    # Still consuming: a valid event on every stream has its effect, and /readyz says 200.
    thread.run(SCENARIOS[svc.name](svc, plain_step(svc), "after-fuzz"), timeout=120)
    svc.assert_every_consumed_stream_covered()
    assert thread.run(svc.ready())
    assert thread.run(svc.all_drained())
