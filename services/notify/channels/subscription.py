"""A browser's Web Push subscription, validated without the push crypto libraries."""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
# A public name has a dot and its last label starts with a letter, as every top-level
# domain does: so not `127.1` or `0x7f.1`, which getaddrinfo reads as 127.0.0.1.
_PUBLIC_NAME = re.compile(rf"(?:{_LABEL}\.)+(?!-)[a-z][a-z0-9-]{{0,62}}(?<!-)")
# Names that are never a push service's: this machine, this network (RFC 6761, RFC 8375,
# ICANN's .internal, names in common private use).
_LOCAL_SUFFIXES = (".localhost", ".local", ".localdomain", ".internal", ".lan", ".home",
                   ".corp", ".arpa", ".test", ".example", ".invalid")


def endpoint_problem(url: str, *, allow_private: bool) -> str | None:
    """What is wrong with a push endpoint notify would POST to, or None.

    A device sends its subscription, so an endpoint left unchecked makes notify POST where
    a device token's holder likes: loopback, the cloud's metadata address, a compose
    service. Push services (FCM, Mozilla, Apple, Windows) are https on public host names;
    an IP literal is refused outright, public or not. `allow_private` (the setting
    WEBPUSH_ALLOW_PRIVATE_ENDPOINTS) lets in http, IP literals and local names: a push
    service of one's own on a private network, or tests. A name that resolves to a private
    address is refused when notify connects (see public_only.py), not here.
    """
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        return "must not contain spaces, control characters or backslashes"
    try:
        parts = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "is not a valid URL"
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        return "must be an https URL"
    if parts.userinfo:
        return "must not carry a user name or password"
    if parts.port is not None and not 0 < parts.port < 65536:
        return "has an invalid port"
    host = parts.host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None if allow_private else "must name a push service's host, not an IP address"
    if len(host) > 253 or not _HOST_NAME.fullmatch(host):
        return "has an invalid host name"
    if not allow_private and (not _PUBLIC_NAME.fullmatch(host)
                              or f".{host}".endswith(_LOCAL_SUFFIXES)):
        return "must name a push service's public host"
    return None


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

    endpoint: str = Field(min_length=8, max_length=2000)
    keys: SubscriptionKeys
    expirationTime: float | None = None  # noqa: N815 (the browser's spelling)

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        # Only that it is a URL here: which endpoints are allowed depends on the settings
        # (api.py checks at registration, the channel again before each send).
        problem = endpoint_problem(value, allow_private=True)
        if problem is not None:
            raise PydanticCustomError("push_endpoint", problem)
        return value

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
