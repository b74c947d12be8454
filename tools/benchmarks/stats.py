"""Pure arithmetic of the benchmark: percentiles, medians of runs, open-loop schedules, rates.

No I/O here, so tests/e2e/test_bench_smoke.py can check every formula quickly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) with linear interpolation between order statistics
    (numpy's default), None for no values."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be within [0, 1], got {q}")
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    if lo == hi:
        return float(ordered[lo])
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Iterable[float | None]) -> float | None:
    """Median of the runs that produced a figure (None runs are left out)."""
    present = [v for v in values if v is not None]
    return percentile(present, 0.5)


def spread(values: Iterable[float | None]) -> tuple[float, float] | None:
    present = [v for v in values if v is not None]
    return (min(present), max(present)) if present else None


def ratio(value: float | None, floor: float | None) -> float | None:
    if value is None or not floor:
        return None
    return value / floor


def rate(count: int, seconds: float) -> float | None:
    """Events per second, None when the interval is empty."""
    return count / seconds if seconds > 0 and count > 0 else None


def first_to_last_rate(count: int, first_s: float, last_s: float) -> float | None:
    """Throughput from the first to the last of `count` completions: count-1 intervals."""
    if count < 2 or last_s <= first_s:
        return None
    return (count - 1) / (last_s - first_s)


def stream_id_ms(entry_id: bytes | str) -> int:
    """The millisecond part of a Redis stream entry id (`<ms>-<seq>`): the server's clock."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


# --- open loop --------------------------------------------------------------------------


def schedule(rate_per_s: float, duration_s: float) -> list[float]:
    """Intended send offsets (seconds from the start) of a fixed-rate open loop."""
    if rate_per_s <= 0 or duration_s <= 0:
        return []
    n = int(round(rate_per_s * duration_s))
    return [i / rate_per_s for i in range(n)]


def due(offsets: Sequence[float], start: int, elapsed_s: float) -> int:
    """Index one past the last offset due by `elapsed_s`, scanning from `start`: what an
    open-loop sender must have sent by now, however late it woke up."""
    i = start
    while i < len(offsets) and offsets[i] <= elapsed_s:
        i += 1
    return i


def latencies(intended_s: Sequence[float], done_s: Sequence[float | None]) -> tuple[list[float], int]:
    """Latency of each request from its intended send time (not from when it was sent, so a
    stalled sender does not hide the stall), and how many never completed."""
    if len(intended_s) != len(done_s):
        raise ValueError("one completion time (or None) per intended send time")
    out: list[float] = []
    missing = 0
    for start, end in zip(intended_s, done_s, strict=True):
        if end is None:
            missing += 1
        else:
            out.append(end - start)
    return out, missing


@dataclass(frozen=True, slots=True)
class Distribution:
    n: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


def distribution(values: Sequence[float]) -> Distribution:
    return Distribution(
        n=len(values),
        p50=percentile(values, 0.50),
        p95=percentile(values, 0.95),
        p99=percentile(values, 0.99),
        max=max(values) if values else None,
    )


def _progress_span(samples: Sequence[tuple[float, ...]],
                   total: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The first sample showing progress and the first showing all `total` done (or the one
    with the most done); samples are (time, completed, ...)."""
    first: tuple[float, ...] | None = None
    last: tuple[float, ...] | None = None
    for sample in samples:
        done = sample[1]
        if done > 0 and first is None:
            first = sample
        if first is not None and (last is None or done > last[1]):
            last = sample
        if done >= total:
            break
    if first is None or last is None or last[0] <= first[0]:
        return None
    return first, last


def progress_rate(samples: Sequence[tuple[float, ...]], total: int) -> float | None:
    """Completions per second from polled (time, completed, ...) samples: from the first
    sample showing progress to the first showing all `total` done (or the last sample)."""
    span = _progress_span(samples, total)
    if span is None:
        return None
    first, last = span
    return (last[1] - first[1]) / (last[0] - first[0])


def progress_cost(samples: Sequence[tuple[float, int, float | None]], total: int) -> float | None:
    """CPU seconds per completion over the same span as `progress_rate`, from samples
    carrying the worker's CPU seconds as their third value."""
    span = _progress_span(samples, total)
    if span is None:
        return None
    first, last = span
    if first[2] is None or last[2] is None or last[1] <= first[1]:
        return None
    return (last[2] - first[2]) / (last[1] - first[1])
