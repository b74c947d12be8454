"""A team moved out of the police keeps its id: the import's `device.revoked`
(`agency_changed`) closes the sockets that still read orders as police, and only those."""

from __future__ import annotations

import dataclasses

import pytest
from faststream.redis import RedisBroker
from websockets.exceptions import ConnectionClosed

from shared import streams
from shared.events import DeviceRevoked

from .conftest import Member, Volunteers, an_order, device, issue
from .test_two_replicas import CALLER, DESCRIPTION, caller_data


async def kind_changed(broker: RedisBroker, member: Member) -> DeviceRevoked:
    event = DeviceRevoked(district="d1", device_id=member.device_id, member_id=member.member_id,
                          team_id=member.team_id, reason="agency_changed")
    await broker.publish(event, stream=streams.DEVICE_REVOKED.name)
    return event


async def test_a_socket_open_across_its_teams_move_out_of_the_police_is_closed_to_reconnect(
        notify: str, volunteers: Volunteers, broker: RedisBroker) -> None:
    # t1 is police when the phone connects; a roster import moves t1 into a volunteer
    # agency (same id), and dispatch, not yet told, issues t1 an order as police, with the
    # caller. The socket that decided at connect its member may read the caller must not
    # live on until its token's re-check (300 s).
    officer = volunteers.enrol("t1")
    async with device(notify, officer) as phone:
        volunteers.members[officer.token] = dataclasses.replace(officer,
                                                                agency_kind="volunteer")
        first = await kind_changed(broker, officer)
        with pytest.raises(ConnectionClosed) as closed:
            await phone.next_of("never", timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
        assert not [f for f in phone.frames if caller_data(f)]

    late = an_order("t1", caller=CALLER, description=DESCRIPTION)  # as police
    await issue(broker, late)
    witness = volunteers.enrol("t2")
    async with device(notify, officer) as again, device(notify, witness) as other:
        # its token now says volunteer: the order comes without the caller
        frame = await again.next_of("order", where=lambda f: f["order_id"] == late.order_id)
        assert frame["priority"] == "P2" and caller_data(frame) == []
        # The same event again (a redelivery, a replay): this socket connected after the
        # change was applied and stays. device.revoked is read in order, so once the
        # witness's own event has closed its socket, the officer's was handled before.
        await broker.publish(
            DeviceRevoked(district="d1", device_id=officer.device_id,
                          member_id=officer.member_id, team_id="t1", reason="agency_changed",
                          event_id=first.event_id),
            stream=streams.DEVICE_REVOKED.name)
        await kind_changed(broker, witness)
        with pytest.raises(ConnectionClosed):
            await other.next_of("never", timeout=5)
        await again.send({"type": "ping"})
        assert await again.next_of("pong") == {"type": "pong"}
