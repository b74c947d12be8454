"""Ways to reach a device besides its socket, behind one small interface, tried in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from shared.events import OrderIssued

from ..store import DeviceRecord

OutcomeStatus = Literal["sent", "failed", "gone"]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: OutcomeStatus  # gone: the device's address for this channel is dead; forget it
    detail: str | None = None


class Channel(Protocol):
    name: str
    contact_field: str  # the device record's field this channel reaches it by


    def reaches(self, device: DeviceRecord) -> bool:
        """Whether this device left what the channel needs (a subscription, a phone)."""
        ...

    async def send(self, order: OrderIssued, device: DeviceRecord) -> Outcome: ...
