"""A member's phone lost mid-shift: revoking the device they are on the shift with ends their
stint as their check-out would, and the admin may check a member out by hand (against a real
Redis). A check-in nobody ended ran on until it ran out, 16 h later: the member was paid to
the 14 h cap, and the team kept on shift with nobody able to answer its orders."""

from __future__ import annotations

from typing import Any

from faststream.redis import RedisBroker

from .conftest import ADMIN, Volunteers
from .test_checking_out import order, statuses, team_state
from .test_points import backdate


async def enrolled(v: Volunteers, member_id: str) -> tuple[str, dict[str, str]]:
    r = await v.client.post(f"/v1/members/{member_id}/devices", headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()["device_id"], {"Authorization": f"Bearer {r.json()['token']}"}


async def revoke(v: Volunteers, member_id: str, device_id: str) -> None:
    r = await v.client.delete(f"/v1/members/{member_id}/devices/{device_id}", headers=ADMIN)
    assert r.status_code == 204, r.text


async def paid(v: Volunteers, member_id: str) -> list[tuple[str, float]]:
    """The member's ledger, read with a device enrolled for it (their others are revoked)."""
    _, device = await enrolled(v, member_id)
    r = await v.client.get("/v1/me/points", headers=device)
    assert r.status_code == 200, r.text
    return sorted((e["reason"], e["points"]) for e in r.json()["history"])


async def audited(v: Volunteers, action: str) -> list[dict[str, Any]]:
    r = await v.client.get("/v1/admin/audit", headers=ADMIN)
    return [e for e in r.json()["entries"] if e["action"] == action]


async def test_revoking_the_device_a_member_is_on_shift_with_ends_their_stint(
        volunteers: Volunteers) -> None:
    v = volunteers
    await v.import_district()
    phone_id, phone = await enrolled(v, "m-wang")
    tablet_id, _ = await enrolled(v, "m-wang")
    _, chen = await enrolled(v, "m-chen")
    for device in (phone, chen):
        assert (await v.client.post("/v1/me/shift/start", headers=device)).status_code == 200
    await backdate(v, "t-vol", "m-wang", 2)
    published = await statuses(v)

    # Her tablet at home is not the device she is on the shift with: she stays on it.
    await revoke(v, "m-wang", tablet_id)
    assert (await team_state(v))["shift_member_ids"] == ["m-chen", "m-wang"]

    # Her phone, lost on the street: her stint ends as her check-out would end it.
    await revoke(v, "m-wang", phone_id)
    state = await team_state(v)
    assert (state["status"], state["on_shift"], state["shift_member_ids"]) == (
        "available", True, ["m-chen"])
    assert await statuses(v) == published  # dispatch sees the same team, still available
    assert await paid(v, "m-wang") == [("patrol", 10)]  # her 2 h, not the 14 h cap
    [entry] = [e for e in await audited(v, "device.revoke") if e["target"] == phone_id]
    assert "stint ended" in entry["detail"], entry

    # Asked again (its answer lost): nothing more is ended or paid.
    await revoke(v, "m-wang", phone_id)
    assert (await team_state(v))["shift_member_ids"] == ["m-chen"]
    assert await paid(v, "m-wang") == [("patrol", 10)]


async def test_revoking_the_last_members_device_on_shift_ends_the_shift_and_dispatch_hears_it(
        volunteers: Volunteers) -> None:
    v = volunteers
    await v.import_district()
    phone_id, phone = await enrolled(v, "m-wang")
    assert (await v.client.post("/v1/me/shift/start", headers=phone)).status_code == 200
    await backdate(v, "t-vol", "m-wang", 1)

    await revoke(v, "m-wang", phone_id)
    state = await team_state(v)
    assert (state["status"], state["on_shift"], state["shift_member_ids"]) == (
        "off_duty", False, [])
    assert (await statuses(v))[-1] == ("off_duty", False, None)
    assert await paid(v, "m-wang") == [("patrol", 5)]


async def test_revoking_the_last_members_device_ends_the_shift_under_the_order_it_holds(
        volunteers: Volunteers, publisher: RedisBroker) -> None:
    # A check-out would be refused (the order left with nobody); a revocation is not: the
    # phone is gone either way. The team goes off shift with its order, and dispatch, hearing
    # it, takes an offer back and flags a taken order for the command room.
    v = volunteers
    await v.import_district()
    phone_id, phone = await enrolled(v, "m-wang")
    assert (await v.client.post("/v1/me/shift/start", headers=phone)).status_code == 200
    await publisher.publish(order("ord_1"), stream="order.issued")
    await v.consumed("order.issued")
    await backdate(v, "t-vol", "m-wang", 1)

    await revoke(v, "m-wang", phone_id)
    state = await team_state(v)
    assert (state["status"], state["on_shift"], state["shift_member_ids"]) == (
        "dispatched", False, [])
    assert (await statuses(v))[-1] == ("dispatched", False, "ord_1")
    assert await paid(v, "m-wang") == [("patrol", 5)]


async def test_removing_the_last_member_on_the_shift_ends_it_under_its_order_as_a_revocation(
        volunteers: Volunteers, publisher: RedisBroker) -> None:
    # Wang, alone on the shift, is on her way to an order when she quits and the coordinator
    # removes her: her phones are revoked with her, and nobody on the shift is left to
    # answer. Revoking her phone first ends the shift under the order (dispatch takes an
    # offer back and flags a taken order); the removal alone left the team on shift with
    # nobody, the order "on its way" for the command room until someone noticed, because
    # Chen, who never checked in, was still on the team's roster.
    v = volunteers
    await v.import_district()
    _, phone = await enrolled(v, "m-wang")
    assert (await v.client.post("/v1/me/shift/start", headers=phone)).status_code == 200
    await publisher.publish(order("ord_1"), stream="order.issued")
    await v.consumed("order.issued")

    r = await v.client.delete("/v1/members/m-wang", headers=ADMIN)
    assert r.status_code == 204, r.text
    state = await team_state(v)
    assert (state["status"], state["on_shift"], state["shift_member_ids"]) == (
        "dispatched", False, [])
    assert (await statuses(v))[-1] == ("dispatched", False, "ord_1")


async def test_the_admin_checks_out_a_member_who_lost_their_phone(
        volunteers: Volunteers, publisher: RedisBroker) -> None:
    v = volunteers
    await v.import_district()
    _, wang = await enrolled(v, "m-wang")
    _, chen = await enrolled(v, "m-chen")
    for device in (wang, chen):
        assert (await v.client.post("/v1/me/shift/start", headers=device)).status_code == 200
    await backdate(v, "t-vol", "m-wang", 2)
    published = await statuses(v)

    assert (await v.client.post("/v1/members/m-wang/check-out",
                                headers=chen)).status_code == 403
    assert (await v.client.post("/v1/members/m-nobody/check-out",
                                headers=ADMIN)).status_code == 404
    out = await v.client.post("/v1/members/m-wang/check-out", headers=ADMIN)
    assert out.status_code == 200, out.text
    body = out.json()
    assert (body["checked_out"], body["points_awarded"], body["on_shift"],
            body["shift_member_ids"]) == (True, 10, True, ["m-chen"])
    assert await statuses(v) == published
    [entry] = await audited(v, "member.check_out")
    assert (entry["target"], entry["who"]) == ("m-wang", "admin:admin"), entry
    again = await v.client.post("/v1/members/m-wang/check-out", headers=ADMIN)
    assert again.status_code == 200 and again.json()["checked_out"] is False
    assert "points_awarded" not in again.json()
    assert (await v.client.get("/v1/me", headers=wang)).json()["checked_in"] is False

    # Chen, the last on the shift, while the team holds an order: refused, as his own
    # check-out is (the order would be left with nobody).
    await publisher.publish(order("ord_1"), stream="order.issued")
    await v.consumed("order.issued")
    refused = await v.client.post("/v1/members/m-chen/check-out", headers=ADMIN)
    assert refused.status_code == 409, refused.text
    assert "ord_1" in refused.json()["error"]["message"]
    assert (await team_state(v))["shift_member_ids"] == ["m-chen"]
