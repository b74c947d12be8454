"""The benchmark's own arithmetic and plumbing, without the services: percentiles, the
open-loop schedule, rates from polled progress, the printed table, and the lean HTTP client
against a real socket. Fast (well under a second); `make bench` itself is never run here."""

from __future__ import annotations

import asyncio
import math

import pytest

from tools.benchmarks.machine import python_speed_ms, reference_workload
from tools.benchmarks.rawhttp import HttpError, Pool, encode_request
from tools.benchmarks.stats import (
    distribution,
    due,
    first_to_last_rate,
    latencies,
    median,
    percentile,
    progress_rate,
    ratio,
    schedule,
    spread,
    stream_id_ms,
)
from tools.benchmarks.table import Row, Target, fmt, format_table


def test_percentiles_interpolate_between_order_statistics_like_numpy() -> None:
    values = list(range(1, 101))  # 1..100, shuffled order must not matter
    values.reverse()
    assert percentile(values, 0.5) == pytest.approx(50.5)
    assert percentile(values, 0.95) == pytest.approx(95.05)
    assert percentile(values, 0.99) == pytest.approx(99.01)
    assert percentile(values, 0.0) == 1
    assert percentile(values, 1.0) == 100
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError):
        percentile(values, 1.5)


def test_median_of_runs_leaves_out_failed_runs() -> None:
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([None, None]) is None
    assert spread([4.0, None, 1.0]) == (1.0, 4.0)
    assert ratio(50.0, 200.0) == 0.25
    assert ratio(None, 200.0) is None and ratio(1.0, 0.0) is None


def test_an_open_loop_schedule_is_evenly_spaced_at_the_rate() -> None:
    offsets = schedule(200, 1.0)
    assert len(offsets) == 200
    assert offsets[0] == 0.0
    assert offsets[-1] == pytest.approx(0.995)
    gaps = {round(b - a, 9) for a, b in zip(offsets, offsets[1:], strict=False)}
    assert gaps == {0.005}
    assert schedule(0, 1.0) == [] and schedule(50, 0) == []
    assert len(schedule(500, 3.0)) == 1500


def test_a_late_sender_catches_up_by_sending_everything_already_due() -> None:
    offsets = schedule(200, 1.0)  # one every 5 ms
    # The loop woke 50 ms late after sending the first request: 10 more are due at once.
    assert due(offsets, 1, 0.050) == 11
    # Nothing is due before its time, and the index never runs past the end.
    assert due(offsets, 11, 0.0501) == 11
    assert due(offsets, 0, 10.0) == 200


def test_latency_runs_from_the_intended_send_time_and_counts_what_never_came() -> None:
    intended = [0.0, 0.005, 0.010, 0.015]
    # The sender stalled: requests 1-3 really left at 0.030, answered at 0.040..0.042.
    done = [0.002, 0.040, None, 0.042]
    measured, missing = latencies(intended, done)
    assert measured == pytest.approx([0.002, 0.035, 0.027])
    assert missing == 1
    summary = distribution(measured)
    assert summary.n == 3 and summary.max == pytest.approx(0.035)
    assert summary.p50 == pytest.approx(0.027)
    with pytest.raises(ValueError):
        latencies([0.0], [])


def test_rates_from_progress_samples_stream_ids_and_first_to_last() -> None:
    # Polled (time, acknowledged): work starts at t=1.0 and ends at t=3.0 with 1000 done.
    samples = [(0.0, 0), (0.5, 0), (1.0, 10), (2.0, 510), (3.0, 1000), (3.5, 1000)]
    assert progress_rate(samples, 1000) == pytest.approx(495.0)
    assert progress_rate([(0.0, 0), (1.0, 0)], 10) is None
    assert stream_id_ms(b"1700000000123-7") == 1_700_000_000_123
    assert stream_id_ms("5-0") == 5
    assert first_to_last_rate(101, 0.0, 2.0) == pytest.approx(50.0)
    assert first_to_last_rate(1, 0.0, 2.0) is None


def test_the_position_rate_of_a_run_comes_from_the_load_generators_reports_around_it() -> None:
    from tools.benchmarks.e2e import Loadgen

    gen = Loadgen(proc=None)  # type: ignore[arg-type]  # only its reports are read here
    gen.samples = [{"t": float(t), "ok": 2000 * t, "skipped": 10 * t} for t in range(4)]
    assert gen.rate_between(0.2, 2.3) == 2000  # reports at 0 and 2
    assert gen.rate_between(1.2, 1.7, "skipped") == 10  # shorter than a report: 1 and 2
    assert gen.rate_between(2.6, 3.9) is None  # no report after it (yet)
    assert Loadgen(proc=None).rate_between(0, 1) is None  # type: ignore[arg-type]


def test_the_table_prints_medians_ratios_and_targets_without_judging_the_run() -> None:
    rows = [
        Row("F1 relay stage", "msg/s", (2600.0, 2700.0, None, 2500.0, 2650.0)),
        Row("dispatch hop", "orders/s", (90.0, 100.0, 95.0), floor_name="F1 relay",
            floor=2625.0, targets=(Target("≥ 0.5 × F1", 0.5),), others=(0.1, 0.3, 0.2),
            cost=(9.5, None, 10.5)),
        Row("p99 @ 200/s", "ms", (40.0, 45.0, 60.0),
            targets=(Target("< 50 ms", 50, on_ratio=False, at_least=False),)),
        Row("never measured", "req/s", (None,)),
    ]
    text = format_table(rows)
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # every line padded to the same width
    assert lines[0].startswith("| figure") and set(lines[1]) <= {"|", "-", ":"}
    relay, hop, p99, never = lines[2:]
    assert "2,625" in relay and "4/5" in relay and "2,500–2,700" in relay
    assert "0.04 × F1 relay" in hop and "≥ 0.5 × F1: missed" in hop and "0.20" in hop
    assert "10.0" in hop  # CPU per unit: the median of the runs that measured it
    assert "45.0" in p99 and "< 50 ms: met" in p99
    assert "n/a" in never and "0/1" in never
    assert fmt(1234567.0) == "1,234,567" and fmt(12.345) == "12.3" and fmt(0.123) == "0.12"
    assert fmt(None) == "n/a" and not math.isnan(float(fmt(3.0)))


async def test_the_lean_http_client_reuses_keep_alive_connections() -> None:
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                body = await reader.readexactly(length)
                answer = b'{"echo":' + str(len(body)).encode() + b"}"
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n"
                             b"content-length: " + str(len(answer)).encode() + b"\r\n\r\n"
                             + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool("127.0.0.1", port, size=2, timeout_s=2.0)
    try:
        request = encode_request("POST", f"127.0.0.1:{port}", "/v1/incidents", token="t",
                                 body=b'{"a":1}')
        assert b"Authorization: Bearer t\r\n" in request and request.endswith(b'\r\n\r\n{"a":1}')
        answers = await asyncio.gather(*(pool.request(request) for _ in range(10)))
        assert answers == [(202, b'{"echo":7}')] * 10
        assert connections <= 2  # ten requests over at most `size` connections
    finally:
        pool.close()
        server.close()
    with pytest.raises((HttpError, OSError)):
        await Pool("127.0.0.1", port, size=1, timeout_s=1.0).request(request)


def test_the_reference_workload_is_fixed_so_that_its_time_compares_machines() -> None:
    # Pinned: the Python speed printed with every run is only comparable between runs if
    # the work is the same; a change to the workload must change this number on purpose.
    assert reference_workload() == 1_192_890
    assert reference_workload(10) == reference_workload(10)
    assert python_speed_ms(repeats=1) > 0
