"""Settings every service reads; each service subclasses `ServiceSettings` with its own knobs."""

from __future__ import annotations

import os
import socket
from typing import Annotated, ClassVar

from limits import parse as parse_limit
from pydantic import AfterValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.connection import parse_url

from shared.http import AuthFailures
from shared.policy import PolicyError, check_policy_file
from shared.tokens import DEVICE_TOKEN_PREFIX, issued_shape, service_key


def _redis_url(value: str) -> str:
    # Checked here, so that a wrong REDIS_URL stops the service at start with its name,
    # not deep in the app's set-up. The message never repeats the URL: it holds a password.
    try:
        parse_url(value)
    except ValueError:
        raise ValueError("must be a redis://, rediss:// or unix:// URL, such as "
                         "redis://user:password@host:6379/0") from None
    return value


def _log_level(value: str) -> str:
    # logging and uvicorn would refuse another name only once the process is set up
    if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value.upper()


ADMIN_TOKEN_MIN_CHARS = 16


def check_admin_token(token: str) -> None:
    """Raises ValueError (a message without the token) for an admin token too short to
    withstand guessing: it opens every service's admin API (rosters, callers, dispatch)."""
    if len(token) < ADMIN_TOKEN_MIN_CHARS:
        raise ValueError(
            f"must be at least {ADMIN_TOKEN_MIN_CHARS} characters (it opens every service's "
            "admin API); make one with: "
            "python3 -c \"import secrets;print(secrets.token_urlsafe(32))\"")
    if token != token.strip():
        raise ValueError("must not begin or end with white space (a space pasted with it): "
                         "a request's token never does, so none would match")
    if token.startswith(DEVICE_TOKEN_PREFIX):
        # volunteers does not count the failures of device tokens notify and intake ask it
        # about (shared.http.AuthFailures): an admin token like them would be guessed there
        raise ValueError(f"must not start with {DEVICE_TOKEN_PREFIX}, the device tokens' prefix")
    if issued_shape(token):
        # checked even from an address locked out for its failures (AuthFailures), where
        # guesses of a token chosen by hand must not be
        raise ValueError("must not look like a token the services issue (a prefix of theirs "
                         "and 43 characters)")


def _limit(value: str) -> str:
    # the `limits` package's notation, as shared.http reads it; checked at start
    if value:
        try:
            item = parse_limit(value)
        except ValueError:
            raise ValueError("must be a count per period, such as 20/minute (empty: none)") from None
        if item.amount < 1:
            raise ValueError("must allow at least 1 (empty: no limit)")
    return value


def _admin_token(value: SecretStr) -> SecretStr:
    check_admin_token(value.get_secret_value())
    return value


def default_consumer_name() -> str:
    # One consumer per process: a restarted process gets a new name, and the reclaimer
    # takes over what the dead one held.
    return f"{socket.gethostname()}-{os.getpid()}"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    redis_url: Annotated[str, AfterValidator(_redis_url)] = Field(
        default="redis://127.0.0.1:6379/0", description="REDIS_URL")
    admin_token: Annotated[SecretStr, AfterValidator(_admin_token)] = Field(
        description="ADMIN_TOKEN: honoured by every service; at least 16 characters")
    http_host: str = Field(default="127.0.0.1", description="HTTP_HOST: address to listen on")
    http_port: int = Field(default=0, ge=0, le=65_535,
                           description="HTTP_PORT: 0 means the service's own port")
    forwarded_allow_ips: str = Field(
        default="", description="FORWARDED_ALLOW_IPS: the addresses of proxies in front "
        "(comma-separated, or *) whose X-Forwarded-For names the client; unset or empty: "
        "none, X-Forwarded-For is ignored (uvicorn's own default, 127.0.0.1 and ::1, let any "
        "local process name a new address with each request and so escape the lockout of "
        "AUTH_FAILURE_LIMIT). Behind a proxy not named here every client has the proxy's "
        "address: one that keeps failing to authenticate locks it out (the tokens the "
        "services issue are still checked; the admin token is not)")
    http_workers: int = Field(default=1, ge=1, le=16,
                              description="HTTP_WORKERS: uvicorn worker processes")
    log_level: Annotated[str, AfterValidator(_log_level)] = Field(
        default="INFO", description="LOG_LEVEL: DEBUG, INFO, WARNING, ERROR or CRITICAL")
    redis_max_connections: int = Field(default=200, ge=4, description="REDIS_MAX_CONNECTIONS: "
                                       "per process; more requests wait for a free one")
    consumer_name: str = Field(default_factory=default_consumer_name, description="CONSUMER_NAME")
    # Reclaiming and dead-lettering (see shared.bus)
    claim_idle_ms: int = Field(default=15_000, ge=100, description="CLAIM_IDLE_MS: reclaim "
                               "after idle (an entry whose handler still runs is kept from it)")
    max_deliveries: int = Field(default=5, ge=1, description="MAX_DELIVERIES: then dead-letter")
    handler_timeout_s: float = Field(
        default=120, gt=0, description="HANDLER_TIMEOUT_S: a handler still running after this "
        "is taken as hung and cancelled; its entry is retried, then dead-lettered")
    bookkeeping_linger_ms: int = Field(
        default=50, ge=0, le=1000, description="BOOKKEEPING_LINGER_MS: pause after a read that "
        "was not full on streams nobody waits on to the tenth of a second, so that the next "
        "read takes several events at once (0: none; see shared.bus._reader)")
    traces_file: str | None = Field(
        default=None, description="TRACES_FILE: write spans as JSON lines to this file"
    )
    traces_max_mb: int = Field(
        default=50, ge=1, description="TRACES_MAX_MB: TRACES_FILE is rotated before it grows "
        "past this many MiB (dispatch.jsonl becomes dispatch.1.jsonl, the one before "
        "dispatch.2.jsonl, ...)")
    traces_keep: int = Field(
        default=3, ge=1, le=100, description="TRACES_KEEP: rotated files of TRACES_FILE kept; "
        "the oldest beyond is deleted: at most (1 + TRACES_KEEP) x TRACES_MAX_MB of spans a "
        "service")
    # Addresses of the other services, for the few synchronous calls there are.
    volunteers_url: str = Field(default="http://127.0.0.1:8003", description="VOLUNTEERS_URL")

    rate_limit_system: Annotated[str, AfterValidator(_limit)] = Field(
        default="600/second", description="RATE_LIMIT_SYSTEM per key (empty: none)")
    rate_limit_device: Annotated[str, AfterValidator(_limit)] = Field(
        default="20/second", description="RATE_LIMIT_DEVICE per token (empty: none)")
    rate_limit_dispatcher: Annotated[str, AfterValidator(_limit)] = Field(
        default="50/second", description="RATE_LIMIT_DISPATCHER per token, also inspectors', "
        "agency desks' and volunteers' coordinators' (empty: none)")
    auth_failure_limit: Annotated[str, AfterValidator(_limit)] = Field(
        default="20/minute", description="AUTH_FAILURE_LIMIT: failed bearer authentications "
        "(unknown tokens) from one client address, per process, before the address is locked "
        "out: 429 with Retry-After, its tokens not checked (but for those of the shape the "
        "services issue: shared.tokens), for AUTH_LOCKOUT_S; empty: no limit")
    auth_lockout_s: float = Field(default=60, gt=0, le=86_400,
                                  description="AUTH_LOCKOUT_S: see AUTH_FAILURE_LIMIT")
    max_body_bytes: int = Field(default=1_000_000, description="MAX_BODY_BYTES: larger is a 413")
    request_timeout_s: float = Field(
        default=10.0, gt=0, le=120,
        description="REQUEST_TIMEOUT_S: a request (or a device socket's set-up) Redis has not "
        "answered within this long is answered 503, ask again; a write's 503 says whether it "
        "was made is not known (see docs/operations.md). Intake's reports have their own, "
        "REPORT_TIMEOUT_S")
    retention_days: float = Field(default=30, gt=0, description="RETENTION_DAYS: stream history "
                                  "kept (only entries every group acknowledged are trimmed)")
    # Redis keeps everything in memory and, full, refuses writes (incidents included): an
    # ended incident's record cannot stay for ever.
    records_days: float = Field(
        default=90, gt=0, description="RECORDS_DAYS: an ended incident's full record (timeline, "
        "orders, the caller's details) kept this long after it ended; then only its figures")
    kpi_days: float = Field(
        default=800, gt=0, description="KPI_DAYS: an ended incident's figures (category, place, "
        "times, outcome) kept this long after it was reported, for the KPIs and the heat map "
        "(a year's KPIs compared with the year before need two years)")

    # the service's own, not settings: never read from the environment (a stray SERVICE_NAME
    # renamed every service)
    service_name: ClassVar[str] = "lianfang"
    default_port: ClassVar[int] = 0

    @property
    def linger_s(self) -> float:
        return self.bookkeeping_linger_ms / 1000

    @property
    def port(self) -> int:
        return self.http_port or self.default_port

    def service_key(self) -> str:
        """The key of this service's calls to volunteers (shared.tokens.service_key)."""
        return service_key(self.admin_token.get_secret_value())

    def auth_failures(self) -> AuthFailures:
        """A process's count of failed authentications (AUTH_FAILURE_LIMIT)."""
        return AuthFailures(self.auth_failure_limit, self.auth_lockout_s)

    def rate_limits(self) -> dict[str, str]:
        return {"system": self.rate_limit_system, "device": self.rate_limit_device,
                "dispatcher": self.rate_limit_dispatcher,
                "inspector": self.rate_limit_dispatcher, "agency": self.rate_limit_dispatcher,
                "coordinator": self.rate_limit_dispatcher}


class BrowserCalls(ServiceSettings):
    """A service the member's page (served by notify) calls from the phone's browser."""

    cors_origins: str = Field(
        default="", description="CORS_ORIGINS: comma-separated browser origins allowed to call "
        "this service (notify's address, where the member's page comes from); empty: none")

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())


class PolicyFile(ServiceSettings):
    """A service that reads the dispatch policy (intake classifies and de-duplicates by it,
    dispatch dispatches by it)."""

    policy_file: str | None = Field(
        default=None, validate_default=True,
        description="POLICY_FILE: the dispatch policy (categories, who may answer, deadlines); "
        "none: shared/policy.yaml, or the file compose mounts over it")

    @field_validator("policy_file")
    @classmethod
    def _policy_usable(cls, value: str | None) -> str | None:
        # Read here, with the environment, so that a wrong file stops the service at start
        # with exit 78 and the places in the file (shared.runtime), not as a traceback out
        # of every worker (which a supervisor restarts for ever), nor later, at the first
        # incident of a category it cannot handle. Also when nothing names a file: compose
        # mounts the deployment's over the built-in one.
        try:
            check_policy_file(value)
        except PolicyError as exc:
            raise ValueError(str(exc)) from None
        return value
