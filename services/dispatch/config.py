"""Dispatch's settings."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared.settings import PolicyFile
from shared.timezones import DEFAULT_TIMEZONE, TimezoneName


class Settings(PolicyFile):
    service_name: ClassVar[str] = "dispatch"
    default_port: ClassVar[int] = 8002
    timer_interval_s: float = Field(default=0.25, description="TIMER_INTERVAL_S: deadline scan")
    timer_lease_s: float = Field(
        default=5.0, gt=0, description="TIMER_LEASE_S: a timer being fired is renewed every "
        "third of this while its firing runs; a replica that dies lets go of it within this "
        "time (as its incidents' locks), and one that failed fires again after it")
    linked_wait_s: float = Field(
        default=30, gt=0, le=600, description="LINKED_WAIT_S: a report linked to an incident "
        "dispatch has not received (its report being handled at the same moment, or lost to "
        "the dead letters) is judged again after this: joined to it if it came, else sent a "
        "team of its own, flagged (longer while that report is still in dispatch's stream)")
    waiting_sweep_s: float = Field(
        default=30, ge=0, le=3600, description="WAITING_SWEEP_S: how often the incidents "
        "waiting for a team are offered the teams free in dispatch's view that no event "
        "offered them (a backstop: the event missed, or its offer failed); 0: never")
    zone_lookup_timeout_s: float = Field(
        default=1.0, description="ZONE_LOOKUP_TIMEOUT_S: loading a district's zones from volunteers")
    zones_refresh_s: float = Field(
        default=10.0, gt=0, description="ZONES_REFRESH_S: how often the zones dispatch keeps are "
        "read again from volunteers (a roster import's zone changes apply within this time)")
    rezoned_grace_s: float = Field(
        default=30, ge=0, le=600, description="REZONED_GRACE_S: a fraud warning's station "
        "team (a category sent to its zone's own station) whose zone a roster import gave to "
        "another station is judged this long after dispatch read the change, as it is then: "
        "the import's statuses, moving a team with its ground, are published after its zones "
        "and may be read after them")
    timezone: TimezoneName = Field(
        default=DEFAULT_TIMEZONE,
        description="TIMEZONE: the district's local time, for the hours of the KPIs and the "
        "heat map (IANA name or +HH:MM)")
