"""What the figures were measured on: CPU, cores, RAM, Python, redis-server, load."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from pydantic import AwareDatetime, BaseModel, ConfigDict


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def redis_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                         check=False).stdout
    for token in out.split():
        if token.startswith("v="):
            return token[2:]
    return out.strip() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def describe(redis_binary: str) -> list[str]:
    ram = _ram_gib()
    return [
        f"CPU: {_cpu_model()}, {os.cpu_count()} logical cores",
        f"RAM: {ram:.1f} GiB" if ram else "RAM: unknown",
        f"OS: {platform.system()} {platform.release()}",
        f"Python: {platform.python_implementation()} {platform.python_version()}",
        f"redis-server: {redis_version(redis_binary)} ({redis_binary})",
        f"load average at start: {load_average()}",
    ]


class _Place(BaseModel):
    lat: float
    lon: float
    address: str | None = None


class _Report(BaseModel):
    """An event's shape, as of `IncidentReported` in 2026-12: the workload's own copy, so
    that the events' schema can change without changing the workload."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    occurred_at: AwareDatetime
    district: str
    incident_id: str
    system_id: str
    external_ref: str
    category: str
    priority: str
    location: _Place
    description: str | None = None
    flags: tuple[str, ...] = ()
    reported_at: AwareDatetime


_REPORT = _Report(
    event_id="0123456789abcdef0123456789abcdef", district="qingxiu",
    occurred_at="2026-11-23T08:00:00+00:00", incident_id="inc_0123456789abcdef0123",
    system_id="sys_0123456789ab", external_ref="110-20261123-000123", category="dispute",
    priority="P2", reported_at="2026-11-23T08:00:00+00:00",
    location=_Place(lat=22.817, lon=108.3665, address="Minzu Avenue 88"),
    description="two neighbours arguing loudly in the stairwell", flags=("in_progress",),
).model_dump_json()


def reference_workload(rounds: int = 2_000) -> int:
    """A fixed piece of the kind of work the services do per message (an event validated
    from JSON and dumped again, a stored hash's fields built as strings, its JSON, a small
    dict turned into a sorted list), `rounds` times. Returns a checksum of what it built,
    the same on every machine, so that only its duration differs."""
    total = 0
    for n in range(rounds):
        event = _Report.model_validate_json(_REPORT)
        fields = {"incident_id": event.incident_id, "category": event.category,
                  "lat": repr(event.location.lat), "lon": repr(event.location.lon),
                  "seq": str(n), "flags": json.dumps(list(event.flags))}
        text = json.dumps(fields, sort_keys=True)
        total += len(event.model_dump_json()) + len(text) + len(sorted(fields.items()))
    return total


def python_speed_ms(repeats: int = 5) -> float:
    """CPU milliseconds the reference workload takes here (median of `repeats`): the
    machine's speed for the services' Python, printed with every run so that runs on
    different machines, or on one VM whose speed drifts, can be compared."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        reference_workload()
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (Linux /proc), None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _stat_fields(pid: str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (everything but idle and iowait)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def tree_seconds(root: int) -> float | None:
    """CPU seconds used by `root` and its descendants, living and reaped."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        parents[int(pid)] = int(fields[1])
        # own time plus that of children already waited for
        used[int(pid)] = sum(int(x) for x in fields[11:15]) / ticks
    members = {root}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in members and pid not in members:
                members.add(pid)
                changed = True
    return sum(used.get(pid, 0.0) for pid in members)


class OtherLoad:
    """How many cores were busy with processes outside the benchmark's process tree."""

    def __init__(self) -> None:
        self.root = os.getpid()
        self._start: tuple[float, float | None, float | None] | None = None

    def start(self) -> None:
        import time

        self._start = (time.monotonic(), machine_busy_seconds(), tree_seconds(self.root))

    def stop(self) -> float | None:
        import time

        if self._start is None:
            return None
        t0, busy0, ours0 = self._start
        t1, busy1, ours1 = time.monotonic(), machine_busy_seconds(), tree_seconds(self.root)
        if None in (busy0, busy1, ours0, ours1) or t1 <= t0:
            return None
        assert busy0 is not None and busy1 is not None and ours0 is not None and ours1 is not None
        return max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / (t1 - t0))
