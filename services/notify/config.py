"""Notify's settings."""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from shared.labels import DEFAULT_LANGUAGE, Language, language_of
from shared.settings import ServiceSettings
from shared.timezones import DEFAULT_TIMEZONE, TimezoneName

from .domain.orders import SMS_LINK_MAX_CHARS


class Settings(ServiceSettings):
    service_name: ClassVar[str] = "notify"
    default_port: ClassVar[int] = 8004

    # Device tokens are owned by volunteers: notify asks it, and caches the answer briefly so
    # a revoked token stops working at once.
    introspect_cache_s: float = Field(default=1.0, description="INTROSPECT_CACHE_S (<= ~1 s)")
    introspect_timeout_s: float = Field(default=3.0, description="INTROSPECT_TIMEOUT_S")
    reauth_interval_s: float = Field(
        default=300.0, description="REAUTH_INTERVAL_S: re-check an open socket's token this "
        "often; a backstop: volunteers' device.revoked closes a revoked device's sockets, and "
        "those of a member moved to another team, at once"
    )

    # The member's page calls intake and volunteers from the browser (each lets notify's
    # origin in with its CORS_ORIGINS); unset, the page offers only the orders.
    intake_public_url: str | None = Field(
        default=None, description="INTAKE_PUBLIC_URL: intake as members' phones reach it; the "
        "page's reports from the street")
    volunteers_public_url: str | None = Field(
        default=None, description="VOLUNTEERS_PUBLIC_URL: volunteers as members' phones reach "
        "it; the page's check-in, position sharing and points")
    notify_public_url: str | None = Field(
        default=None, description="NOTIFY_PUBLIC_URL: notify as members' phones reach it "
        "(http or https, no user, query or fragment; its /device at most 48 characters): an "
        "order's SMS links the member's page there, to answer it; unset: no link")

    # The device WebSocket
    ping_interval_s: float = Field(default=20.0, description="PING_INTERVAL_S: heartbeat frames")
    max_frame_bytes: int = Field(
        default=8192, description="MAX_FRAME_BYTES: larger frames refused (an answer with its "
        "note and ten evidence references fits)")
    ws_max_size: int = Field(
        default=65_536, description="WS_MAX_SIZE: the transport closes the socket above this"
    )
    frame_rate_per_s: float = Field(default=5.0, description="FRAME_RATE_PER_S: sustained rate")
    frame_burst: int = Field(default=20, description="FRAME_BURST: frames allowed at once")
    send_queue: int = Field(
        default=256, description="SEND_QUEUE: frames queued per socket (a replay sends at most "
        "half of it, 100 orders at most)")

    # Orders
    order_ttl_s: int = Field(
        default=14 * 86_400, description="ORDER_TTL_S: keep an order's state this long after "
        "it ended (answered resolved, handover or declined; withdrawn)")
    order_open_ttl_s: int = Field(
        default=90 * 86_400, description="ORDER_OPEN_TTL_S: a live order (issued, acknowledged, "
        "en route, on scene) is kept this long after it was issued or its team last answered "
        "it (at least ORDER_TTL_S): the way out of an order whose end never reached notify")
    barred_warning_s: int = Field(
        default=2 * 3600, gt=0, description="BARRED_WARNING_S: for this long after a volunteer "
        "team is taken off an order because of the incident's flags (a weapon), a page of the "
        "team that connects without showing the order (reloaded offline, a second phone) is "
        "warned of it, until its member has read the warning there")
    reinforce_repeat_s: float = Field(
        default=30.0, description="REINFORCE_REPEAT_S: a second reinforce within this is a retry"
    )

    # Fallback channels, tried in order when no device confirmed receipt on the socket.
    fallback_after_s: float = Field(
        default=30.0, description="FALLBACK_AFTER_S: the longest wait before each fallback "
        "step. An order with an acknowledge-by deadline goes sooner: its steps and the "
        "member's answer after the last share the time left before it (a P1, 30 s: Web Push "
        "at 10 s, SMS at 20 s); a step that reached nobody is followed by the next at once; "
        "an order without a deadline (a hand-over) waits this long before each step")
    fallback_channels: str = Field(
        default="webpush,sms", description="FALLBACK_CHANNELS: comma-separated, in order"
    )
    fallback_poll_s: float = Field(default=0.5, description="FALLBACK_POLL_S")
    fallback_lease_s: float = Field(
        default=30.0, description="FALLBACK_LEASE_S: a claimed timer comes back after this"
    )
    channel_timeout_s: float = Field(default=10.0, description="CHANNEL_TIMEOUT_S")
    shift_lookup_timeout_s: float = Field(
        default=1.0, description="SHIFT_LOOKUP_TIMEOUT_S: how long a fallback step waits for "
        "volunteers to say who is on the team's shift (asked only when some device confirmed "
        "receipt: a member off shift having the order is not the team having it); no answer "
        "in time: any receipt counts")

    # Web Push (VAPID): off unless a private key is configured.
    vapid_private_key: SecretStr | None = Field(
        default=None, description="VAPID_PRIVATE_KEY: raw P-256 key, base64url (or PEM)"
    )
    vapid_subject: str = Field(
        default="mailto:ops@lianfang.invalid", description="VAPID_SUBJECT: mailto: or https:"
    )
    webpush_ttl_s: int = Field(
        default=300, description="WEBPUSH_TTL_S: how long the push service keeps a push for "
        "a phone that is offline; an order's push never past the order's acknowledge-by")
    webpush_allow_private_endpoints: bool = Field(
        default=False, description="WEBPUSH_ALLOW_PRIVATE_ENDPOINTS: also accept and send to "
        "http://, IP-address and local push endpoints and private addresses (a push service "
        "of your own on a private network, or tests). Off: a device may subscribe only an "
        "https endpoint on a public host name, and notify connects only to public addresses"
    )

    # SMS gateway: off unless a URL is configured.
    sms_gateway_url: str | None = Field(default=None, description="SMS_GATEWAY_URL")
    sms_gateway_token: SecretStr | None = Field(
        default=None, description="SMS_GATEWAY_TOKEN: sent as a bearer token when set"
    )
    timezone: TimezoneName = Field(
        default=DEFAULT_TIMEZONE, description="TIMEZONE: the district's local time, in which an "
        "SMS gives the order's acknowledge-by (IANA name or +HH:MM; as dispatch's and "
        "volunteers')")
    sms_language: Language = Field(
        default=DEFAULT_LANGUAGE, description="SMS_LANGUAGE: zh (Chinese, the default) or en: "
        "the language of the texts members are sent (zh-CN, en-US are taken as zh, en)")

    @field_validator("sms_language", mode="before")
    @classmethod
    def _sms_language(cls, value: object) -> object:
        # `zh-CN` as a person writes it; another language stops notify at start (exit 78)
        return language_of(value) if isinstance(value, str) else value

    @field_validator("notify_public_url")
    @classmethod
    def _notify_public_url(cls, value: str | None) -> str | None:
        # The link goes to every phone of a team, through the carrier, in clear, and stays
        # in the inbox: nothing in it may be a credential (a `?token=`, a user:password), and
        # it must leave an SMS room for the place (exit 78 at start, naming the variable).
        if value is None:
            return None
        parts = urlsplit(value)
        if (parts.scheme not in ("http", "https") or not parts.hostname
                or not value.isascii() or any(c.isspace() for c in value)):
            raise ValueError("must be an http:// or https:// address")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise ValueError("must hold no user or password: it is texted in clear")
        if parts.query or parts.fragment or "?" in value or "#" in value:
            raise ValueError("must hold no query or fragment: it is texted in clear")
        if len(_device_page(value)) > SMS_LINK_MAX_CHARS:
            raise ValueError(f"its /device must be at most {SMS_LINK_MAX_CHARS} characters "
                             "(it goes in an SMS)")
        return value

    @property
    def device_page_url(self) -> str | None:
        """The member's page as phones reach it (linked in an order's SMS); None: unset."""
        return _device_page(self.notify_public_url) if self.notify_public_url else None

    @field_validator("vapid_private_key")
    @classmethod
    def _vapid_key(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, so that a wrong key stops notify at start with exit 78 naming the
        # variable (shared.runtime), not as a traceback in each worker, nor signs with it.
        if value is not None:
            from .channels.webpush import load_vapid  # the push libraries: only when set

            load_vapid(value.get_secret_value())
        return value

    @field_validator("vapid_subject")
    @classmethod
    def _vapid_subject(cls, value: str) -> str:
        # RFC 8292 2.1: the push service's contact for the sender; services refuse others
        if not value.startswith(("mailto:", "https://")) or len(value) < 10:
            raise ValueError("must be a mailto: address or an https:// URL (RFC 8292)")
        return value

    @property
    def live_order_ttl_s(self) -> int:
        """How long a live order is kept after its last write (never less than an ended
        one: the record must outlive `domain.orders.outlived`'s window)."""
        return max(self.order_open_ttl_s, self.order_ttl_s)

    @property
    def channel_order(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.fallback_channels.split(",") if c.strip())


def _device_page(public_url: str) -> str:
    return public_url.rstrip("/") + "/device"
