"""The tokens the services issue: their shape, which the lockout of a failing address spares,
and the services' own key, derived from ADMIN_TOKEN."""

from __future__ import annotations

import pytest

from shared.tokens import (
    COORDINATOR_TOKEN_PREFIX,
    DESK_TOKEN_PREFIX,
    DEVICE_TOKEN_PREFIX,
    ISSUED_PREFIXES,
    SERVICE_KEY_PREFIX,
    SYSTEM_KEY_PREFIX,
    issued_shape,
    new_token,
    service_key,
)


@pytest.mark.parametrize("prefix", [DEVICE_TOKEN_PREFIX, SYSTEM_KEY_PREFIX, DESK_TOKEN_PREFIX,
                                    COORDINATOR_TOKEN_PREFIX])
def test_every_issued_token_has_the_issued_shape(prefix: str) -> None:
    tokens = {new_token(prefix) for _ in range(200)}
    assert len(tokens) == 200
    assert all(t.startswith(prefix) and len(t) == len(prefix) + 43 for t in tokens)
    assert all(issued_shape(t) for t in tokens)


@pytest.mark.parametrize("token", [
    None, "", "lfd_", "lfd_" + "a" * 42, "lfd_" + "a" * 44, "lfd_" + "a" * 42 + "=",
    "lfd_" + "a" * 42 + " ", "lfx_" + "a" * 43, "LFD_" + "a" * 43, "xlfd_" + "a" * 43,
    "a" * 47, "failures-admin-0123456789abcdef", "lfd_" + "a" * 42 + "\n",
])
def test_anything_else_has_not(token: str | None) -> None:
    assert not issued_shape(token)


def test_the_services_key_is_of_an_issued_shape_and_made_from_the_admin_token_alone() -> None:
    key = service_key("an-admin-token-of-some-length")
    assert key.startswith(SERVICE_KEY_PREFIX) and issued_shape(key)
    assert key == service_key("an-admin-token-of-some-length")  # every service makes the same
    assert key != service_key("an-admin-token-of-some-lengtH")
    assert "an-admin-token" not in key
    # HMAC-SHA256(ADMIN_TOKEN, "lianfang service"), URL-safe base64, as docs/operations.md
    # says (worked out with: printf %s "lianfang service" | openssl dgst -sha256 -hmac KEY)
    assert service_key("0123456789abcdef") == "lfi_koatoMUIZyUDRhRA8BiGtJQ8UPOJEAL8-xqF_dGEGwk"


def test_a_new_token_is_only_of_an_issued_kind() -> None:
    assert set(ISSUED_PREFIXES) == {"lfd_", "lfs_", "lfc_", "lfi_", "lfv_"}
    with pytest.raises(AssertionError):
        new_token("lfx_")


def test_a_coordinator_s_token_is_taken_for_no_other_kind() -> None:
    """Intake and notify pass a token of the device tokens' prefix to volunteers to check,
    and every service takes the services' key by its value: a coordinator's token (of
    volunteers alone) has a prefix of its own, so it is none of theirs, unknown there."""
    token = new_token(COORDINATOR_TOKEN_PREFIX)
    others = set(ISSUED_PREFIXES) - {COORDINATOR_TOKEN_PREFIX}
    assert not any(token.startswith(prefix) for prefix in others)
    assert not any(prefix.startswith(COORDINATOR_TOKEN_PREFIX) for prefix in others)
