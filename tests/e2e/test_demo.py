"""The README's first hour: `make demo` fed into `make run`'s stack, whose supervisor restarts
a service that dies; the demo's phones must keep getting and answering orders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import running_stack
from tests.e2e.journey import admin, unique_district
from tests.helpers import ctrl_c_reaches_it, poll_until
from tools import demo as demo_tool
from tools.stack import ROOT, Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Its own stack: a test kills services under it.
    with running_stack(tmp_path_factory.mktemp("demo"), lambda policy: None) as running:
        yield running


def start_demo(stack: Stack, district: str, workdir: Path) -> subprocess.Popen[bytes]:
    """`make demo` as the README runs it (no DURATION: until Ctrl-C), at one incident in 5 s."""
    env = {**os.environ, "ADMIN_TOKEN": stack.admin_token, "DISTRICT": district, "RATE": "12",
           "LIANFANG_VAR": str(workdir), "DURATION": "0",
           **{f"{name.upper()}_URL": stack.url(name) for name in stack.services}}
    out = (workdir / "demo.out").open("ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "tools.demo"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=ctrl_c_reaches_it)
    finally:
        out.close()


def still_running(demo: subprocess.Popen[bytes], output: Path) -> bool:
    assert demo.poll() is None, f"the demo stopped:\n{output.read_text(errors='replace')[-3000:]}"
    return True


async def receipts_since(client: httpx.AsyncClient, stack: Stack, district: str,
                         since: datetime) -> list[dict[str, Any]]:
    """Receipts of orders by a phone's socket, on the timelines of the district's incidents
    reported after `since`."""
    dispatch = stack.url("dispatch")
    r = await client.get(f"{dispatch}/v1/incidents", headers=admin(stack),
                         params={"district": district})
    if r.status_code == 422 and r.json()["error"]["field"] == "district":
        return []  # the demo has not imported the district's roster yet
    r.raise_for_status()
    found = []
    for row in r.json()["incidents"]:
        if datetime.fromisoformat(row["reported_at"]) <= since:
            continue
        r = await client.get(f"{dispatch}/v1/incidents/{row['incident_id']}",
                             headers=admin(stack))
        r.raise_for_status()
        found += [e for e in r.json()["timeline"] if e["kind"] == "receipt"]
    return found


async def wait_for_first_receipt(client: httpx.AsyncClient, stack: Stack, district: str,
                                 demo: subprocess.Popen[bytes], output: Path) -> None:
    await poll_until(
        lambda: still_running(demo, output)
        and receipts_since(client, stack, district, datetime.min.replace(tzinfo=UTC)),
        "a demo phone to receive its first order", timeout=60, interval=0.5)


async def wait_for_roll_call(client: httpx.AsyncClient, stack: Stack, district: str,
                             demo: subprocess.Popen[bytes], output: Path) -> dict[str, Any]:
    """The command room's roll call, through dispatch's route (which asks volunteers): the
    demo's teams planned for the shift being worked now, whichever it is, those it holds back
    not checked in and the others in."""
    held_back = {f"{district}-{team}" for team in demo_tool.HELD_BACK}
    seen: dict[str, Any] = {}

    async def shown() -> dict[str, Any] | None:
        still_running(demo, output)
        r = await client.get(f"{stack.url('dispatch')}/v1/shift-check-ins",
                             headers=admin(stack), params={"district": district})
        r.raise_for_status()
        seen.update(r.json())
        planned = {t["team_id"] for t in seen["teams"]}
        missing = {t["team_id"] for t in seen["teams"] if not t["checked_in"]}
        return seen if missing and missing == planned & held_back and planned - missing else None

    try:
        return await poll_until(shown, "the roll call to show the demo's planned teams, those "
                                "held back not checked in", timeout=30, interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the roll call last read: {seen}") from None


def stop(demo: subprocess.Popen[bytes]) -> None:
    demo.send_signal(signal.SIGINT)  # Ctrl-C
    demo.wait(15)


async def test_demo_runs_in_a_second_district_of_the_same_redis(
        demo_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Roster ids are global: the demo's must not collide between districts (DISTRICT=)."""
    async with httpx.AsyncClient(timeout=10) as client:
        for district in (unique_district(), unique_district()):
            workdir = tmp_path_factory.mktemp("district")
            demo = start_demo(demo_stack, district, workdir)
            try:
                await wait_for_first_receipt(client, demo_stack, district, demo,
                                             workdir / "demo.out")
                # each district's teams planned for the shift now, on the same Redis
                found = await wait_for_roll_call(client, demo_stack, district, demo,
                                                 workdir / "demo.out")
                assert found["not_checked_in"] == 2 < found["planned"], found
                # the leftovers of a district new to the roster asked for after its import:
                # before it, dispatch refuses the district (422)
                output = (workdir / "demo.out").read_text(errors="replace")
                assert "not closed" not in output, output
            finally:
                stop(demo)


async def test_a_held_back_team_an_earlier_run_checked_in_is_not_in(
        demo_stack: Stack, tmp_path: Path) -> None:
    """Every phone of a demo run before plans were set checked in, and a check-in lasts the
    whole patrol: run again, the teams it now holds back check out, or the roll call would
    show everyone in."""
    district = unique_district()
    vol = demo_stack.url("volunteers")
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{vol}/v1/roster/import", headers=admin(demo_stack),
                              json=demo_tool.roster(district))
        assert r.status_code == 200, r.text
        for team in demo_tool.HELD_BACK:
            r = await client.post(f"{vol}/v1/members/{district}-{team}-m1/devices",
                                  headers=admin(demo_stack))
            assert r.status_code == 201, r.text
            r = await client.post(f"{vol}/v1/me/shift/start",
                                  headers={"Authorization": f"Bearer {r.json()['token']}"})
            assert r.status_code == 200, r.text
        demo = start_demo(demo_stack, district, tmp_path)
        try:
            await wait_for_roll_call(client, demo_stack, district, demo, tmp_path / "demo.out")
        finally:
            stop(demo)


async def test_demo_keeps_reporting_and_answering_when_make_run_restarts_a_service(
        demo_stack: Stack, tmp_path: Path) -> None:
    district = unique_district()
    demo = start_demo(demo_stack, district, tmp_path)
    output = tmp_path / "demo.out"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await wait_for_first_receipt(client, demo_stack, district, demo, output)
            # As a crash would; `make run` starts them again. Meanwhile the phones lose their
            # sockets and the next report finds nobody at intake's address.
            demo_stack.kill("notify")
            demo_stack.kill("intake")
            await poll_until(lambda: still_running(demo, output)
                             and "intake did not answer" in output.read_text(errors="replace"),
                             "the demo to find intake away", timeout=30, interval=0.2)
            restarted_at = datetime.now(UTC)
            demo_stack.services["notify"].start()
            demo_stack.services["intake"].start()
            demo_stack.wait_ready(timeout=30)

            await poll_until(
                lambda: still_running(demo, output)
                and receipts_since(client, demo_stack, district, restarted_at),
                "an incident reported after the restart to reach a demo phone", timeout=60,
                interval=0.5)
    finally:
        stop(demo)
