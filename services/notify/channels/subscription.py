"""A browser's Web Push subscription, validated without the push crypto libraries."""

from __future__ import annotations

import base64
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


def b64url_decode(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("is not base64url") from exc


class SubscriptionKeys(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    p256dh: str = Field(min_length=1, max_length=200)
    auth: str = Field(min_length=1, max_length=100)

    @field_validator("p256dh")
    @classmethod
    def _point(cls, value: str) -> str:
        raw = b64url_decode(value)
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError("must be an uncompressed P-256 point, base64url")
        return value

    @field_validator("auth")
    @classmethod
    def _secret(cls, value: str) -> str:
        if len(b64url_decode(value)) != 16:
            raise ValueError("must be a 16-byte secret, base64url")
        return value


class Subscription(BaseModel):
    """A browser's PushSubscription.toJSON()."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    endpoint: str = Field(min_length=8, max_length=2000, pattern=r"^https?://")
    keys: SubscriptionKeys
    expirationTime: float | None = None  # noqa: N815 (the browser's spelling)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
