"""A test past pytest-timeout's limit shows where each of its asyncio tasks waits, down the
chain of awaits (tests/conftest.py), so that a hang seen once can be read after the fact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HANGING = '''
import asyncio


async def recorder_waits_for_ever() -> None:
    await asyncio.Event().wait()


async def stop_waits_for_the_recorder() -> None:
    await asyncio.create_task(recorder_waits_for_ever(), name="the-recorder")


def test_a_restart_that_hangs() -> None:
    loop = asyncio.new_event_loop()  # as the state machines run their steps
    loop.run_until_complete(stop_waits_for_the_recorder())
'''


def test_a_hung_asyncio_test_shows_each_task_down_to_what_it_awaits(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_timeout_set_timer\n")
    (tmp_path / "test_hang.py").write_text(HANGING)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         "--timeout", "1", "--rootdir", str(tmp_path), str(tmp_path / "test_hang.py")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=120, check=False)
    out = run.stdout
    assert "Timeout (>1.0s) from pytest-timeout" in out, out
    assert "asyncio tasks at the timeout" in out, out
    recorder = out[out.index("name='the-recorder'"):]
    # the recorder's task, down through Event.wait to the future it waits for
    assert "test_hang.py:6 in recorder_waits_for_ever" in recorder, out
    assert "in wait" in recorder and "awaits <Future pending" in recorder, out
    assert "test_hang.py:10 in stop_waits_for_the_recorder" in out, out
