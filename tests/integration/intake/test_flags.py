"""The flags this deployment's policy reads (GET /v1/flags): a reporting system learns which
of its flags change anything (raise the priority, bar volunteers) and how; any other flag is
kept, reaches the teams and changes nothing, and is still accepted."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.intake.config import Settings
from services.intake.main import create_app
from shared.policy import DEFAULT_POLICY
from tests.integration.conftest import volunteers_for
from tests.integration.intake.conftest import ADMIN, system_key
from tests.integration.intake.test_api import incident


async def test_the_flags_the_policy_reads_are_listed_with_what_each_does(
        intake: httpx.AsyncClient) -> None:
    key = await system_key(intake, ["d1"])
    r = await intake.get("/v1/flags", headers=key)
    assert r.status_code == 200, r.text
    assert r.json() == [
        {"flag": "in_progress", "raises_to": "P1", "bars_volunteers": False},
        {"flag": "injury", "raises_to": "P1", "bars_volunteers": False},
        {"flag": "weapon", "raises_to": "P1", "bars_volunteers": True},
    ]
    # a flag the policy does not read is kept, and changes nothing
    r = await intake.post("/v1/incidents", headers=key,
                          json=incident("r-knife", category="noise", flags=["持刀"]))
    assert r.status_code == 202 and r.json()["priority"] == "P4"
    said = (await intake.get("/openapi.json")).json()["paths"]["/v1/flags"]["get"]
    assert "changes nothing" in said["description"]
    report = (await intake.get("/openapi.json")).json()["paths"]["/v1/incidents"]["post"]
    assert "GET /v1/flags" in report["description"]


def a_policy_raising_on(tmp_path: Path, flags: str) -> str:
    text = Path(DEFAULT_POLICY).read_text().replace(
        "raise_to_p1_flags: [weapon, injury, in_progress]", f"raise_to_p1_flags: [{flags}]")
    (tmp_path / "policy.yaml").write_text(text)
    return str(tmp_path / "policy.yaml")


async def test_the_list_is_the_deployments_policy(clean_redis: str, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    policy_file = a_policy_raising_on(tmp_path, "weapon, fire_arm")
    async with volunteers_for(request, "d1") as volunteers_url:
        app = create_app(Settings(redis_url=clean_redis, admin_token="test-admin-token",
                                  volunteers_url=volunteers_url,
                                  policy_file=policy_file))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://intake") as client:
                r = await client.get("/v1/flags", headers=ADMIN)
    assert r.json() == [
        {"flag": "fire_arm", "raises_to": "P1", "bars_volunteers": False},
        {"flag": "weapon", "raises_to": "P1", "bars_volunteers": True},
    ]
