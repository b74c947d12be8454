"""Ways to reach a device besides its socket, behind one small interface, tried in order."""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol

import httpx

from shared.events import OrderIssued

from ..store import DeviceRecord

OutcomeStatus = Literal["sent", "failed", "gone"]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: OutcomeStatus  # gone: the device's address for this channel is dead; forget it
    detail: str | None = None
    # failed for a passing reason (the service down, throttling, no answer in time): the
    # same message may go through later; `retry_after_s`: what the service asked us to wait
    retry: bool = False
    retry_after_s: float | None = None
    # failed, yet the message may have reached the phone: no answer came, or a proxy said
    # the service behind it did not answer (its take-back goes should the order be withdrawn)
    maybe_sent: bool = False


class Channel(Protocol):
    name: str
    contact_field: str  # the device record's field this channel reaches it by


    def reaches(self, device: DeviceRecord) -> bool:
        """Whether this device left what the channel needs (a subscription, a phone)."""
        ...

    async def send(self, order: OrderIssued, device: DeviceRecord, *,
                   version: int = 0, answered: bool = False) -> Outcome:
        """The order's message; `version` > 0: the order sent again as amended (its
        version, store.OrderRecord.version), a message of its own that says it is an
        update, never taken for the first one again (an SMS's own reference); `answered`
        (an update only): the team has acknowledged the order, so the message asks no one
        to acknowledge it, and its acknowledge-by bounds nothing."""
        ...

    async def take_back(self, order: OrderIssued, device: DeviceRecord, *,
                        barred_by: tuple[str, ...] = ()) -> Outcome | None:
        """Tells a device this channel sent the order to that it was withdrawn (a Web Push
        that replaces the order's; an SMS saying not to go); None: the channel cannot.
        `barred_by`: the incident's flags that took the volunteer team off it (a weapon),
        which the message names, telling one already there to leave."""
        ...


# Answers that say "not now" rather than "not this": worth the same request later.
_PASSING = frozenset({408, 425, 429, 500, 502, 503, 504})
# Of those, the answers that do not say the message was not taken: an error inside the
# service, or a proxy's word that the service behind it failed or did not answer in time.
_MAYBE_TAKEN = frozenset({500, 502, 504})


def unreached(exc: httpx.HTTPError) -> Outcome:
    """No answer (refused, reset, timed out): maybe taken, maybe not; worth trying again.
    Only the exception's type is kept: its text may name the URL (a push subscription's
    credential, a gateway's key in its query)."""
    return Outcome("failed", type(exc).__name__, retry=True, maybe_sent=True)


def refused(response: httpx.Response) -> Outcome:
    """A non-success answer: failed, and whether the same request may succeed later."""
    code = response.status_code
    if code not in _PASSING:
        return Outcome("failed", f"HTTP {code}")
    return Outcome("failed", f"HTTP {code}", retry=True,
                   retry_after_s=retry_after(response.headers.get("retry-after")),
                   maybe_sent=code in _MAYBE_TAKEN)


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After in seconds, given as seconds or as an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if at.tzinfo is None:
        return None
    return max(0.0, at.timestamp() - (time.time() if now is None else now))
