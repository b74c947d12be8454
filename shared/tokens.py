"""The bearer tokens the services issue, made one way (a prefix of their kind and 256 random
bits), and the services' own key for their calls to volunteers, derived from ADMIN_TOKEN.

Their shape matters to the lockout of an address that keeps failing to authenticate
(shared.http.AuthFailures): a token of an issued token's shape is checked even then, since
guessing 256 bits is hopeless however fast one tries; anything else (an ADMIN_TOKEN guess,
user-chosen, or junk) is refused unchecked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

DEVICE_TOKEN_PREFIX = "lfd_"  # volunteers' device tokens (members' phones)
SYSTEM_KEY_PREFIX = "lfs_"  # intake's system keys (110, video analytics, door access)
DESK_TOKEN_PREFIX = "lfc_"  # dispatch's dispatcher and inspector tokens (the command room)
SERVICE_KEY_PREFIX = "lfi_"  # the services' own calls to volunteers (service_key)
# volunteers' coordinator tokens (a district's volunteer coordinator): of volunteers alone,
# never the devices' prefix, which intake and notify pass to volunteers to check
COORDINATOR_TOKEN_PREFIX = "lfv_"
ISSUED_PREFIXES = (DEVICE_TOKEN_PREFIX, SYSTEM_KEY_PREFIX, DESK_TOKEN_PREFIX,
                   SERVICE_KEY_PREFIX, COORDINATOR_TOKEN_PREFIX)

_RANDOM_BYTES = 32  # 256 bits
_RANDOM_CHARS = 43  # their URL-safe base64, unpadded (secrets.token_urlsafe(32))
_ISSUED = re.compile(
    f"(?:{'|'.join(map(re.escape, ISSUED_PREFIXES))})[A-Za-z0-9_-]{{{_RANDOM_CHARS}}}")


def new_token(prefix: str) -> str:
    """A new token of an issued kind: its prefix and 256 random bits."""
    assert prefix in ISSUED_PREFIXES, prefix
    return f"{prefix}{secrets.token_urlsafe(_RANDOM_BYTES)}"


def issued_shape(token: str | None) -> bool:
    """Whether `token` looks like one the services issue (a prefix of theirs, then 43
    URL-safe characters): a token of 256 bits, pointless to guess, so worth checking from an
    address locked out for its failures."""
    return token is not None and _ISSUED.fullmatch(token) is not None


# Changing it changes every service's key at once: they all derive it at start.
_SERVICE_KEY_MESSAGE = b"lianfang service"


def service_key(admin_token: str) -> str:
    """The key the services call volunteers' reads with (the roster's districts, a
    district's zones and shifts worked now, a team's view, an agency): HMAC-SHA256(ADMIN_TOKEN,
    "lianfang service") behind SERVICE_KEY_PREFIX, so no secret of its own is configured and
    every service holding the same ADMIN_TOKEN makes the same one. Of an issued token's
    shape, it is checked from an address locked out (127.0.0.1, where every caller of
    `make run` comes from, or one proxy's), where ADMIN_TOKEN would not be. It opens those
    reads only (kind "service"), never the admin's API; a new ADMIN_TOKEN makes a new key.
    A secret as the admin token is: whoever holds it may try to find a short ADMIN_TOKEN
    from it offline; never logged, never shown."""
    digest = hmac.new(admin_token.encode(), _SERVICE_KEY_MESSAGE, hashlib.sha256).digest()
    return SERVICE_KEY_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
