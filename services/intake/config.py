"""Intake's settings."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "intake"
    default_port: int = 8001
    waitaof_timeout_ms: int = Field(
        default=1000,
        description="WAITAOF_TIMEOUT_MS: wait this long for the AOF fsync before answering 202 "
        "(used when the server supports WAITAOF and has AOF on)",
    )
