"""Intake's settings."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared.settings import BrowserCalls, PolicyFile


class Settings(BrowserCalls, PolicyFile):
    service_name: ClassVar[str] = "intake"
    default_port: ClassVar[int] = 8001
    waitaof_timeout_ms: int = Field(
        default=1000,
        description="WAITAOF_TIMEOUT_MS: wait this long for the AOF fsync before answering 202 "
        "(used when the server supports WAITAOF and has AOF on)",
    )
    report_timeout_s: float = Field(
        default=10.0, gt=0,
        description="REPORT_TIMEOUT_S: a report Redis has not taken within this long of its "
        "arrival (its key's or device token's check included) is answered 503 (kept or not: "
        "the retry with the same external_ref tells)",
    )
    # A member's report from the street comes with the member's device token, which
    # volunteers owns: intake asks it (VOLUNTEERS_URL) every time, so that a revoked device
    # is refused at once (intake does not read device.revoked).
    introspect_timeout_s: float = Field(default=3.0, description="INTROSPECT_TIMEOUT_S")
