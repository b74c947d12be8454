"""Every stream of the system with its producer and its consumer groups: the map to read first.

A consumer group is named after the consuming service. Groups are created at id 0 by
`shared.bus.consuming` before a service starts reading, so no event
published before a consumer first starts is ever skipped (FastStream would create a
missing group at `$`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stream:
    name: str
    producer: str
    consumers: tuple[str, ...]
    # Approximate MAXLEN for high-rate streams; None keeps everything (trimmed by retention).
    maxlen: int | None = None

    @property
    def dead_letters(self) -> str:
        return f"dlq.{self.name}"


INCIDENT_REPORTED = Stream("incident.reported", "intake", ("dispatch",))
# A reporting system asks to cancel its report: dispatch flags it for the command room.
INCIDENT_CANCEL_REQUESTED = Stream("incident.cancel_requested", "intake", ("dispatch",))
INCIDENT_UPDATED = Stream("incident.updated", "dispatch", ("intake",))
INCIDENT_HANDED_OVER = Stream("incident.handed_over", "dispatch", ())
INCIDENT_CLOSED = Stream("incident.closed", "dispatch", ("intake", "volunteers"))
ORDER_ISSUED = Stream("order.issued", "dispatch", ("notify", "volunteers"))
# intake: the entry of a team stood down (OrderWithdrawn.entry), for the reporting system
ORDER_WITHDRAWN = Stream("order.withdrawn", "dispatch", ("notify", "volunteers", "intake"))
ORDER_ESCALATED = Stream("order.escalated", "dispatch", ())
# The command room revised a live order's incident (priority, flags): the phones are told.
ORDER_AMENDED = Stream("order.amended", "dispatch", ("notify",))
ORDER_DELIVERED = Stream("order.delivered", "notify", ("dispatch",))
ORDER_RESPONDED = Stream("order.responded", "notify", ("dispatch", "volunteers"))
UNIT_STATUS = Stream("unit.status", "volunteers", ("dispatch",))
UNIT_POSITION = Stream("unit.position", "volunteers", ("dispatch",), maxlen=200_000)
# A revoked device token: notify closes that device's open sockets at once.
DEVICE_REVOKED = Stream("device.revoked", "volunteers", ("notify",))

ALL: tuple[Stream, ...] = (
    INCIDENT_REPORTED,
    INCIDENT_CANCEL_REQUESTED,
    INCIDENT_UPDATED,
    INCIDENT_HANDED_OVER,
    INCIDENT_CLOSED,
    ORDER_ISSUED,
    ORDER_WITHDRAWN,
    ORDER_ESCALATED,
    ORDER_AMENDED,
    ORDER_DELIVERED,
    ORDER_RESPONDED,
    UNIT_STATUS,
    UNIT_POSITION,
    DEVICE_REVOKED,
)

SERVICES = ("intake", "dispatch", "volunteers", "notify")
# Each service owns the Redis keys under its prefix and never writes another's.
KEY_PREFIX = {"intake": "intake:", "dispatch": "dispatch:", "volunteers": "roster:",
              "notify": "notify:"}


def consumed_by(service: str) -> tuple[Stream, ...]:
    return tuple(s for s in ALL if service in s.consumers)


def produced_by(service: str) -> tuple[Stream, ...]:
    return tuple(s for s in ALL if s.producer == service)


def entry_id_order(value: str | bytes) -> tuple[int, int]:
    """A stream entry id (`<ms>-<seq>`) as numbers, to compare ids as Redis orders them."""
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def by_name(name: str) -> Stream:
    for stream in ALL:
        if stream.name == name:
            return stream
    raise KeyError(name)
