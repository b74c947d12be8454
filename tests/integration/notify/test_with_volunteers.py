"""The contract with the real volunteers service: its device tokens open notify's socket, and
revoking a device there closes that socket here at once (device.revoked)."""

from __future__ import annotations

import secrets

import httpx
import pytest
from faststream.redis import RedisBroker
from websockets.exceptions import ConnectionClosed

from services.notify.config import Settings
from services.notify.main import create_app
from services.volunteers.config import Settings as VolunteersSettings
from services.volunteers.main import create_app as create_volunteers

from .conftest import ADMIN, ADMIN_TOKEN, Member, an_order, device, issue, serving

SCENE = (22.817, 108.3665)


def roster(district: str) -> dict[str, object]:
    lat, lon = SCENE
    d = 0.02
    return {
        "district": district,
        "agencies": [{"id": f"{district}-sps", "name": "Service Station", "kind": "police",
                      "role": "station"}],
        "zones": [{"id": f"{district}-z1", "name": "Zone 1", "owner_agency_id": f"{district}-sps",
                   "polygon": [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d],
                               [lon - d, lat + d], [lon - d, lat - d]]}],
        "teams": [{"id": f"{district}-t1", "agency_id": f"{district}-sps", "name": "Patrol 1",
                   "mode": "car", "skills": [], "home_zone_id": f"{district}-z1"}],
        "members": [{"id": f"{district}-m1", "name": "Officer Li", "agency_id": f"{district}-sps",
                     "team_id": f"{district}-t1", "role": "officer"}],
    }


async def test_a_device_enrolled_at_volunteers_gets_orders_until_volunteers_revokes_it(
        clean_redis: str, broker: RedisBroker) -> None:
    district = f"d{secrets.token_hex(4)}"
    volunteers_app = create_volunteers(VolunteersSettings(
        redis_url=clean_redis, admin_token=ADMIN_TOKEN, consumer_name="vol-test"))
    async with serving(volunteers_app) as volunteers_url, \
            httpx.AsyncClient(timeout=10) as http:
        r = await http.post(f"{volunteers_url}/v1/roster/import", headers=ADMIN,
                            json=roster(district))
        assert r.status_code == 200, r.text
        r = await http.post(f"{volunteers_url}/v1/members/{district}-m1/devices", headers=ADMIN)
        assert r.status_code in (200, 201), r.text
        enrolled = r.json()
        member = Member(token=enrolled["token"], device_id=enrolled["device_id"],
                        member_id=f"{district}-m1", team_id=f"{district}-t1", district=district)

        notify_app = create_app(Settings(redis_url=clean_redis, admin_token=ADMIN_TOKEN,
                                         volunteers_url=volunteers_url,
                                         consumer_name="notify-test-vol"))
        async with serving(notify_app) as notify, device(notify, member) as phone:
            r = await http.get(f"{notify}/v1/devices/me", headers=member.bearer)
            assert r.status_code == 200, r.text
            assert (r.json()["device_id"], r.json()["team_id"]) == (member.device_id,
                                                                    member.team_id)
            order = an_order(member.team_id, district=district)
            await issue(broker, order)
            assert (await phone.next_of("order"))["order_id"] == order.order_id

            r = await http.delete(
                f"{volunteers_url}/v1/members/{member.member_id}/devices/{member.device_id}",
                headers=ADMIN)
            assert r.status_code == 204, r.text
            with pytest.raises(ConnectionClosed) as closed:
                await phone.next_of("never", timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
            r = await http.get(f"{notify}/v1/devices/me", headers=member.bearer)
            assert r.status_code == 401
