"""A service's /metrics as Prometheus reads it: the time histograms have buckets in seconds
that answer the alerts docs/operations.md writes on them (p90 of the time to assign, to
acknowledge, to the scene; the time to handle an entry), and each worker of a service run
with HTTP_WORKERS above 1 counts in series of its own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What a service's process does: its meter provider installed (shared.runtime), then its
# instruments recorded; FastStream's histograms made as its telemetry middleware makes them.
SCRAPE = """
from shared.metrics import setup_metrics
setup_metrics("dispatch")
from opentelemetry import metrics
from prometheus_client import REGISTRY, generate_latest
import services.dispatch.engine as engine
import shared.bus as bus
for seconds in (0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.12):
    engine.TIME_TO_ASSIGN.record(seconds, {"priority": "P1"})
    bus.HANDLED.record(seconds / 10, {"stream": "s", "group": "g", "outcome": "handled"})
for seconds in (12, 14, 16, 18, 20, 22, 24, 26, 28, 35):
    engine.TIME_TO_ACK.record(seconds, {"priority": "P1"})
for seconds in (100, 120, 140, 160, 180, 200, 220, 240, 260, 400):
    engine.TIME_TO_SCENE.record(seconds, {"priority": "P1"})
faststream = metrics.get_meter("faststream")
for name in ("messaging.process.duration", "messaging.publish.duration"):
    faststream.create_histogram(name=name, unit="s", description="").record(0.003)
print(generate_latest(REGISTRY).decode())
"""


def scraped() -> str:
    done = subprocess.run([sys.executable, "-c", SCRAPE], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout


def buckets(text: str, metric: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of `metric`'s first series, +Inf left out."""
    found = []
    for line in text.splitlines():
        if line.startswith(f"{metric}_bucket{{"):
            le = re.search(r'le="([^"]+)"', line).group(1)
            if le != "+Inf":
                found.append((float(le), float(line.rsplit(" ", 1)[1])))
    assert found, f"no {metric} in the scrape"
    return found


def p90(points: list[tuple[float, float]], total: float) -> float:
    """Prometheus's histogram_quantile(0.9, …): linear within the bucket it falls in."""
    rank, lower, below = 0.9 * total, 0.0, 0.0
    for upper, count in points:
        if count >= rank:
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    raise AssertionError("p90 beyond the last bucket")


def test_the_time_histograms_answer_their_alerts_in_seconds() -> None:
    # With the SDK's default boundaries (0, 5, 10, 25, … 10000: made for milliseconds) every
    # time to assign of a healthy night fell in 0–5 s and its p90 read 4.5 s ("dispatch
    # lags"), the P1 acknowledgements of 12 to 35 s read a p90 of 47.5 s, the time to the
    # scene's 3–5 minutes could not be told apart, and every entry handled read the same.
    text = scraped()
    assert p90(buckets(text, "lianfang_dispatch_time_to_assign_seconds"), 10) < 0.25
    assert 25 <= p90(buckets(text, "lianfang_dispatch_time_to_acknowledge_seconds"), 10) <= 35
    assert 240 <= p90(buckets(text, "lianfang_dispatch_time_to_scene_seconds"), 10) <= 300
    assert p90(buckets(text, "lianfang_stream_handle_duration_seconds"), 10) < 0.025
    for metric in ("messaging_process_duration_seconds", "messaging_publish_duration_seconds"):
        assert p90(buckets(text, metric), 1) < 0.01, metric


WORKER = """
from shared.metrics import setup_metrics
setup_metrics("volunteers", workers={workers})
from opentelemetry import metrics
from prometheus_client import REGISTRY, generate_latest
metrics.get_meter("lianfang.volunteers").create_counter("lianfang.volunteers.position_fixes").add(
    3, {{"outcome": "published"}})
print(generate_latest(REGISTRY).decode())
"""


def fixes_series(workers: int) -> list[str]:
    done = subprocess.run([sys.executable, "-c", WORKER.format(workers=workers)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return [line for line in done.stdout.splitlines()
            if line.startswith("lianfang_volunteers_position_fixes_total{")]


def test_each_worker_of_a_service_counts_in_series_of_its_own() -> None:
    # HTTP_WORKERS=2 (volunteers under the positions' load): each worker process has its own
    # figures and a scrape of /metrics is answered by whichever worker took the connection.
    # In the same series, the counters jumped between the two workers' values at every
    # scrape (Prometheus took each fall for a restart: the rates were nonsense).
    (one,) = fixes_series(2)
    (other,) = fixes_series(2)
    instance = re.compile(r'service_instance_id="([^"]+)"')
    assert instance.search(one) and instance.search(other)
    assert instance.search(one).group(1) != instance.search(other).group(1)
    # One worker: the series as before, no label that changes at every restart.
    (alone,) = fixes_series(1)
    assert "service_instance_id" not in alone
