"""The compose deployment, checked without Docker (no engine answers on the build machines).

deploy/docker-compose.yml must start the entry points `make run` starts, pass only variables
the services' Settings read, agree with the services on ports and health checks, keep Redis
durable, and wire the collector so that spans reach Jaeger without personal data.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import io
import re
import subprocess
import sys
import threading
from functools import cache
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from opentelemetry.sdk import environment_variables as otel_env
from pydantic import AliasChoices

import tools.stack as stack
from shared.metrics import pushes_over_otlp
from shared.runtime import proxy_options

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
COLLECTOR_FILE = DEPLOY / "otel-collector.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
SERVICES = ("intake", "dispatch", "volunteers", "notify")

# ${VAR}, ${VAR:-default}, ${VAR:?error}: compose's interpolation
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
# The standard OTEL_* names the OpenTelemetry SDK reads.
OTEL_NAMES = frozenset(
    v for k, v in vars(otel_env).items() if k.startswith("OTEL_") and isinstance(v, str)
)
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


# --- reading the files --------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@cache
def collector() -> dict[str, Any]:
    return yaml.safe_load(COLLECTOR_FILE.read_text(encoding="utf-8"))


def compose_service(name: str) -> dict[str, Any]:
    services = compose().get("services", {})
    if name not in services:
        pytest.fail(f"{COMPOSE_FILE.name} has no service {name!r}")
    return services[name]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def interpolate(value: str) -> str:
    """Substitute ${VAR...} as compose would: the default if one is given, else a stand-in
    that differs per variable (so two places using the same variable compare equal)."""

    def sub(m: re.Match[str]) -> str:
        var, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        return arg if op.endswith("-") else f"stand-in-{var.lower()}"

    return INTERPOLATION.sub(sub, value)


def healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = service.get("healthcheck", {}).get("test")
    assert isinstance(test, list) and test, "healthcheck.test must be a list"
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", " ".join(test[1:])]
    assert test[0] == "CMD", f"healthcheck.test starts with {test[0]!r}"
    return test[1:]


def healthcheck_url(service: dict[str, Any]) -> str:
    urls = re.findall(r"https?://[^\s'\"]+", " ".join(healthcheck_argv(service)))
    assert len(urls) == 1, f"expected one URL in the healthcheck, found {urls}"
    return urls[0]


def published_ports(service: dict[str, Any]) -> list[tuple[int | None, int]]:
    """(host port, container port) of each `ports:` entry, short or long syntax."""
    out: list[tuple[int | None, int]] = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published")
            out.append((int(published) if published else None, int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        out.append((int(parts[-2]) if len(parts) >= 2 else None, int(parts[-1])))
    return out


def module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def settings_class(name: str) -> type:
    if not module_exists(f"services.{name}.config"):
        pytest.fail(f"services/{name}/config.py does not exist (yet): compose runs {name}")
    return importlib.import_module(f"services.{name}.config").Settings


def env_names(settings: type) -> dict[str, list[str]]:
    """Field name -> the environment variable names pydantic-settings reads for it."""
    config = settings.model_config
    prefix = config.get("env_prefix", "")
    upper = not config.get("case_sensitive", False)
    names: dict[str, list[str]] = {}
    for field, info in settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, str):
            found = [alias]
        elif isinstance(alias, AliasChoices):
            found = [c for c in alias.choices if isinstance(c, str)]
        else:
            found = [prefix + field]
        names[field] = [n.upper() if upper else n for n in found]
    return names


def service_sources(name: str) -> str:
    files = [*(ROOT / "services" / name).rglob("*.py"), *(ROOT / "shared").rglob("*.py")]
    return "\n".join(f.read_text(encoding="utf-8") for f in files)


def route_paths(routes: list[Any]) -> set[str]:
    """Every path an app serves; FastAPI 0.165 wraps included routers (original_router)."""
    paths: set[str] = set()
    for route in routes:
        if getattr(route, "path", None):
            paths.add(route.path)
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        if inner is not None and hasattr(inner, "routes"):
            paths |= route_paths(inner.routes)
    return paths


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


# --- the four services ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_compose_builds_each_service_from_the_one_image(name: str) -> None:
    build = compose_service(name).get("build")
    assert isinstance(build, dict), f"{name} must be built from deploy/Dockerfile"
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT, f"{name}: build context {context} is not the repository root"
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE


@pytest.mark.parametrize("name", SERVICES)
def test_command_is_the_entry_point_make_run_starts(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    command = compose_service(name).get("command")
    assert command == ["python", "-m", f"services.{name}"]
    assert module_exists(f"services.{name}.__main__"), f"services/{name}/__main__.py is missing"

    started: list[list[str]] = []

    class RecordingPopen:
        def __init__(self, args: list[str], **_: Any) -> None:
            started.append(list(args))
            self.stdout = io.BytesIO()  # its output, ended at once

    monkeypatch.setattr(stack.subprocess, "Popen", RecordingPopen)
    stack.Service(name, 0, {}, tmp_path / f"{name}.log").start()
    assert started == [[sys.executable, "-m", f"services.{name}"]]
    assert command[1:] == started[0][1:], "compose and make run start different modules"


@pytest.mark.parametrize("name", SERVICES)
def test_every_variable_compose_passes_is_read_by_the_service(name: str) -> None:
    settings = settings_class(name)
    readable = {n for names in env_names(settings).values() for n in names} | OTEL_NAMES
    unknown = sorted(set(environment(compose_service(name))) - readable)
    assert not unknown, (
        f"{name} gets {unknown} from compose, but neither its Settings nor OpenTelemetry "
        "reads them (typo, or a field that was renamed?)"
    )


@pytest.mark.parametrize("name", SERVICES)
def test_every_required_setting_is_provided(name: str) -> None:
    settings = settings_class(name)
    env = environment(compose_service(name))
    missing = [
        names[0]
        for field, names in env_names(settings).items()
        if settings.model_fields[field].is_required() and not set(names) & set(env)
    ]
    assert not missing, f"{name} cannot start: compose does not pass {missing}"


@pytest.mark.parametrize("name", SERVICES)
def test_a_deployment_setting_given_to_one_service_is_given_to_every_service_reading_it(
    name: str,
) -> None:
    # The district's TIMEZONE passed to dispatch and volunteers but not to notify left an SMS
    # giving its deadline in another clock than the console's: one operator's `.env` line
    # must reach every service that reads it.
    readable = {n for names in env_names(settings_class(name)).values() for n in names}
    own = set(environment(compose_service(name)))
    given = {var: other for other in SERVICES if other != name
             for var, value in environment(compose_service(other)).items()
             if INTERPOLATION.fullmatch(str(value))}
    missing = sorted(f"{var} (given to {other})" for var, other in given.items()
                     if var in readable and var not in own)
    assert not missing, f"{name} reads {missing} but compose does not pass it"


@pytest.mark.parametrize("name", SERVICES)
def test_settings_load_from_the_compose_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_class(name)
    for names in env_names(settings).values():
        for var in names:
            monkeypatch.delenv(var, raising=False)
    for var, value in environment(compose_service(name)).items():
        monkeypatch.setenv(var, interpolate(value))
    loaded = settings()
    assert loaded.port == stack.DEFAULT_PORTS[name]
    assert loaded.http_host in ("0.0.0.0", "::"), "a published port cannot reach a loopback listener"


@pytest.mark.parametrize("name", SERVICES)
def test_the_proxy_named_in_env_is_trusted_and_none_without_it(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Behind a TLS proxy every phone would have its address (the lockout of AUTH_FAILURE_LIMIT
    # is per address); without one, X-Forwarded-For must name nobody
    value = environment(compose_service(name)).get("FORWARDED_ALLOW_IPS")
    assert value is not None, f"{name}: .env's FORWARDED_ALLOW_IPS does not reach it"
    settings = settings_class(name)
    for names in env_names(settings).values():
        for var in names:
            monkeypatch.delenv(var, raising=False)
    for var, given in environment(compose_service(name)).items():
        monkeypatch.setenv(var, interpolate(given))
    assert proxy_options(settings()) == {"proxy_headers": False}
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", INTERPOLATION.sub(
        lambda m: "172.18.0.1" if m.group(1) == "FORWARDED_ALLOW_IPS" else m.group(0), value))
    assert proxy_options(settings()) == {"proxy_headers": True,
                                         "forwarded_allow_ips": "172.18.0.1"}


@pytest.mark.parametrize("name", SERVICES)
def test_no_address_the_service_uses_points_at_its_own_container(name: str) -> None:
    # Settings default to 127.0.0.1 for make run; inside a container that is the container
    # itself, so compose must override every such address the service's code reads.
    settings = settings_class(name)
    env = environment(compose_service(name))
    sources = service_sources(name)
    for field, names in env_names(settings).items():
        default = settings.model_fields[field].default
        if field == "http_host" or not isinstance(default, str):
            continue
        if not any(host in default for host in LOOPBACK):
            continue
        if not re.search(rf"\.{field}\b", sources):
            continue  # not read by this service
        given = [env[n] for n in names if n in env]
        assert given, f"{name} reads {field} (default {default}) but compose does not set {names[0]}"
        assert not any(host in interpolate(given[0]) for host in LOOPBACK), (
            f"{name}: {names[0]} points at the container itself"
        )


@pytest.mark.parametrize("name", SERVICES)
def test_ports_agree_everywhere(name: str) -> None:
    service = compose_service(name)
    port = int(environment(service)["HTTP_PORT"])
    assert port == stack.DEFAULT_PORTS[name], "compose and make run use different ports"
    assert port == settings_class(name).default_port
    assert (port, port) in published_ports(service), f"{name}: {port} is not published as {port}"
    assert urlsplit(healthcheck_url(service)).port == port, "the healthcheck probes another port"


@pytest.mark.parametrize("name", SERVICES)
def test_healthcheck_probes_readyz_with_python(name: str) -> None:
    service = compose_service(name)
    argv = healthcheck_argv(service)
    assert argv[:2] == ["python", "-c"], "the slim image has no curl or wget: use python"
    compile(argv[2], f"{name} healthcheck", "exec")
    url = urlsplit(healthcheck_url(service))
    assert url.hostname in ("127.0.0.1", "localhost") and url.path == "/readyz"

    if not module_exists(f"services.{name}.main"):
        pytest.fail(f"services/{name}/main.py does not exist (yet)")
    settings = settings_class(name)
    app = importlib.import_module(f"services.{name}.main").create_app(
        settings(admin_token="test-admin-token"))
    assert "/readyz" in route_paths(app.router.routes), f"{name} serves no /readyz"


class _Probe(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


@pytest.mark.parametrize("name", SERVICES)
def test_healthcheck_passes_only_when_ready(name: str) -> None:
    service = compose_service(name)
    argv = healthcheck_argv(service)
    port = urlsplit(healthcheck_url(service)).port
    for status, healthy in ((200, True), (503, False)):
        handler = type("Probe", (_Probe,), {"status": status})
        server = HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            code = argv[2].replace(f":{port}/", f":{server.server_port}/")
            rc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode
        finally:
            server.shutdown()
            server.server_close()
        assert (rc == 0) is healthy, f"{name}: /readyz answering {status} gave exit code {rc}"


@pytest.mark.parametrize("name", SERVICES)
def test_service_waits_for_healthy_redis_and_restarts(name: str) -> None:
    service = compose_service(name)
    assert service.get("depends_on", {}).get("redis", {}).get("condition") == "service_healthy"
    # FastStream exits on purpose when a stream or group vanishes (NOGROUP): come back.
    assert service.get("restart") == "unless-stopped"


@pytest.mark.parametrize("name", SERVICES)
def test_service_reaches_the_compose_redis_as_its_own_acl_user(name: str) -> None:
    from tools.redis_acl import password_variable

    redis_url = environment(compose_service(name))["REDIS_URL"]
    url = urlsplit(interpolate(redis_url))
    assert (url.scheme, url.hostname, url.port or 6379) == ("redis", "redis", 6379)
    assert url.username == name, f"{name} must log in as its own Redis user"
    # the same variable feeds the ACL user's password in the redis container
    redis_env = environment(compose_service("redis"))
    assert url.password == interpolate(redis_env[password_variable(name)])


@pytest.mark.parametrize("name", SERVICES)
def test_traces_are_named_after_the_service(name: str) -> None:
    assert environment(compose_service(name)).get("OTEL_SERVICE_NAME") == name


# --- Redis ----------------------------------------------------------------------------------


def redis_args() -> dict[str, str]:
    command = compose_service("redis").get("command")
    # redis-server itself, or deploy/redis/entrypoint.sh, which execs it with the ACL file
    assert isinstance(command, list)
    if command[:2] == ["sh", "/etc/lianfang/redis/entrypoint.sh"]:
        command = command[1:]
    assert command[0] in ("redis-server", "/etc/lianfang/redis/entrypoint.sh")
    args = [interpolate(str(a)) for a in command[1:]]  # with the defaults .env may change
    return dict(zip(args[::2], args[1::2], strict=True))


def test_redis_runs_with_the_acl_entrypoint_from_the_repository() -> None:
    redis = compose_service("redis")
    assert redis["command"][:2] == ["sh", "/etc/lianfang/redis/entrypoint.sh"]
    assert "./redis:/etc/lianfang/redis:ro" in redis.get("volumes", [])
    script = (ROOT / "deploy" / "redis" / "entrypoint.sh").read_text()
    assert "--aclfile" in script and "users.acl.template" in script
    for var in ("REDIS_ADMIN_PASSWORD", *(f"REDIS_PASSWORD_{s.upper()}" for s in SERVICES)):
        assert var in script and var in environment(redis), var


def shell_lines(path: Path) -> list[str]:
    """The script's commands, one per line: comments and blank lines dropped, continuations
    joined."""
    text = re.sub(r"\s*\\\n\s*", " ", path.read_text(encoding="utf-8"))
    lines = (line.split(" #")[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_compose_redis_steps_down_from_root_to_the_redis_user() -> None:
    # The image's docker-entrypoint.sh steps down to `redis` only when the command is
    # `redis-server`. Compose's is `sh deploy/redis/entrypoint.sh ...`, which it ran on as
    # root: Redis, and whatever a Lua script or a bug in it could reach, held root in the
    # container. The script steps down itself, with setpriv (util-linux, part of every
    # Debian-based redis image; the image's gosu is not in every version), once root has
    # written the ACL file (from a bind mount the redis user may not be able to read) and
    # handed the data volume (a volume a root Redis wrote holds root-owned AOF files) over.
    redis = compose_service("redis")
    assert "user" not in redis, "started as root, the entrypoint steps down itself"
    lines = shell_lines(DEPLOY / "redis" / "entrypoint.sh")
    assert 'run_as=${REDIS_USER-redis}' in lines, "the container's Redis runs as `redis`"
    root = next((i for i, line in enumerate(lines)
                 if re.fullmatch(r'if \[ "\$\(id -u\)" = 0 \] && \[ -n "\$run_as" \]; then', line)),
                None)
    assert root is not None, "no branch for a start as root"
    branch = lines[root + 1:lines.index("fi", root)]
    execs = [line for line in lines if line.startswith("exec ")]
    assert execs[-1] == 'exec "$server" "$@" --aclfile "$rendered"', "the unprivileged start"
    dropping = [line for line in branch if line.startswith("exec ")]
    assert dropping == [
        'exec setpriv --reuid="$run_as" --regid="$gid" --clear-groups -- '
        '"$server" "$@" --aclfile "$rendered"'
    ], "as root, the server is started only through setpriv"
    assert 'gid=$(id -g "$run_as")' in lines[:root + 1] + branch
    # the rendered ACL file: root's, readable by the redis group, by no one else
    assert 'chgrp "$gid" "$rendered"' in branch and 'chmod 640 "$rendered"' in branch
    assert "umask 077" in lines[:lines.index(next(x for x in lines if x.startswith("sed ")))]
    # the data volume: the AOF the image's /data holds (Redis's dir is its working directory)
    assert ('find /data \\! -user "$run_as" -exec chown "$run_as:$gid" {} +' in branch)


def test_redis_is_durable_and_protected() -> None:
    redis = compose_service("redis")
    image = redis["image"]
    match = re.fullmatch(r"redis:(\d+)\.(\d+)(\.\d+)?(-[\w.-]+)?", image)
    assert match, f"pin Redis to a version tag, not {image!r}"
    # intake relies on WAITAOF (7.2+); the design asks for 7.4 or newer
    assert (int(match.group(1)), int(match.group(2))) >= (7, 4)
    args = redis_args()
    assert args.get("--appendonly") == "yes"
    assert args.get("--appendfsync") in ("everysec", "always")
    assert args.get("--maxmemory-policy") == "noeviction", "eviction can drop whole streams"
    assert args.get("--protected-mode") == "yes"
    assert "--requirepass" not in args, "the ACL file sets the users; requirepass would clash"
    assert redis.get("restart") == "unless-stopped"


def run_redis_entrypoint(*args: str) -> subprocess.CompletedProcess[str]:
    """deploy/redis/entrypoint.sh as the container runs it, `echo` standing in for
    redis-server: what it would start Redis with, or why it refuses to."""
    # (passwords as the entrypoint takes them: 16 characters or more, each its own)
    env = {"REDIS_ADMIN_PASSWORD": "admin-password-0123",
           "ACL_TEMPLATE": str(DEPLOY / "redis" / "users.acl.template"),
           "ACL_FILE": "/dev/null", "REDIS_SERVER": "echo", "REDIS_USER": "",
           "PATH": "/usr/bin:/bin",
           **{f"REDIS_PASSWORD_{s.upper()}": f"{s}-password-0123" for s in SERVICES}}
    return subprocess.run(["sh", str(DEPLOY / "redis" / "entrypoint.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=30)


def test_the_aof_fsync_is_chosen_per_deployment_everysec_or_always() -> None:
    # DESIGN: appendfsync is set per deployment, `always` where no acknowledged write may be
    # lost. Under compose it was fixed at everysec: `always` meant editing the compose file.
    command = [str(a) for a in compose_service("redis")["command"]]
    assert command[command.index("--appendfsync") + 1] == "${REDIS_APPENDFSYNC:-everysec}"
    for value in ("everysec", "always"):
        started = run_redis_entrypoint("--appendonly", "yes", "--appendfsync", value)
        assert started.returncode == 0, started.stderr
        assert f"--appendfsync {value}" in started.stdout
    # `no` leaves the fsync to the kernel (some 30 s): an acknowledged incident could be lost
    for value in ("no", "Always", ""):
        refused = run_redis_entrypoint("--appendonly", "yes", "--appendfsync", value)
        assert refused.returncode != 0 and "REDIS_APPENDFSYNC" in refused.stderr, value
        assert refused.stdout == ""


def test_redis_data_lives_in_a_named_volume() -> None:
    volumes = compose_service("redis").get("volumes", [])
    named = [
        v.split(":")[0] for v in volumes
        if isinstance(v, str) and v.split(":")[1] == "/data" and not v.startswith((".", "/"))
    ]
    assert named, "mount a named volume at /data (where the AOF lives)"
    assert named[0] in (compose().get("volumes") or {}), f"volume {named[0]} is not declared"


def test_redis_healthcheck_pings() -> None:
    argv = " ".join(healthcheck_argv(compose_service("redis")))
    assert "redis-cli" in argv and "ping" in argv


def test_every_pulled_image_is_pinned() -> None:
    for name, service in compose()["services"].items():
        if "build" in service:
            continue
        image = service.get("image", "")
        _, _, tag = image.rpartition(":")
        assert "/" not in tag and tag and tag != "latest" and re.search(r"\d", tag), (
            f"{name}: pin {image!r} to a version"
        )


# --- the image ------------------------------------------------------------------------------


def test_dockerfile_installs_the_runtime_lock_before_the_source_and_drops_root() -> None:
    steps = dockerfile_instructions()
    keywords = [k for k, _ in steps]
    text = DOCKERFILE.read_text(encoding="utf-8")

    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.11-slim")
    assert ("WORKDIR", "/app") in steps
    assert any(k == "ENV" and re.search(r"\bPYTHONUNBUFFERED=1\b", v) for k, v in steps)
    assert "requirements-dev.lock" not in text, "the image installs the runtime lock only"
    for absent in ("HEALTHCHECK", "CMD", "ENTRYPOINT"):
        assert absent not in keywords, f"{absent} belongs in compose, per service"

    install = next(
        (i for i, (k, v) in enumerate(steps) if k == "RUN" and re.search(r"-r\s+requirements\.lock", v)),
        None,
    )
    assert install is not None, "pip install -r requirements.lock"
    copies = [(i, v.split()) for i, (k, v) in enumerate(steps) if k == "COPY"]
    lock_copy = min(i for i, args in copies if "requirements.lock" in args[:-1])
    sources = {"shared/", "shared", "services/", "services"}
    source_copies = [i for i, args in copies if set(args[:-1]) & sources]
    assert lock_copy < install < min(source_copies), "dependencies go in a layer before the source"

    users = [(i, v) for i, (k, v) in enumerate(steps) if k == "USER"]
    assert users, "the image runs as root"
    last_user = users[-1][1].split(":")[0]
    assert last_user not in ("root", "0") and users[-1][0] > install


WRITES_TO_DISK = {"write_text", "write_bytes", "mkdir", "makedirs", "mkstemp", "mkdtemp",
                  "NamedTemporaryFile", "TemporaryFile", "TemporaryDirectory", "touch"}
# logging's handlers that write a file, made or derived from
FILE_HANDLERS = {"FileHandler", "RotatingFileHandler", "TimedRotatingFileHandler",
                 "WatchedFileHandler"}


def disk_writes(tree: ast.AST) -> list[int]:
    """Lines that write to a file or make one: `open` in a writing mode, pathlib's and os's
    writers, tempfile's files, logging's file handlers."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
                (base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", ""))
                in FILE_HANDLERS for base in node.bases):
            lines.append(node.lineno)
        if not isinstance(node, ast.Call):
            continue
        name = (node.func.attr if isinstance(node.func, ast.Attribute)
                else node.func.id if isinstance(node.func, ast.Name) else "")
        if name in WRITES_TO_DISK | FILE_HANDLERS:
            lines.append(node.lineno)
        elif name == "open":
            mode = (node.args[1] if len(node.args) > 1
                    else next((k.value for k in node.keywords if k.arg == "mode"), None))
            if mode is not None and not (isinstance(mode, ast.Constant)
                                         and not set(str(mode.value)) & set("wax+")):
                lines.append(node.lineno)
    return lines


def test_services_run_hardened_and_write_nothing_to_disk() -> None:
    # The four services' containers have a read-only root file system (a tmpfs /tmp), no
    # capability and no way to gain a privilege; that holds only while their code writes no
    # file. The collector and Jaeger need no capability either. Redis starts as root to hand
    # its volume over and step down (test above), so it keeps root's default capabilities,
    # but gains none after the switch.
    for name in SERVICES:
        service = compose_service(name)
        assert service.get("read_only") is True, f"{name}: read-only root file system"
        assert service.get("tmpfs") == ["/tmp"], f"{name}: a tmpfs for /tmp"
    for name, service in compose()["services"].items():
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        if name != "redis":
            assert service.get("cap_drop") == ["ALL"], f"{name}: no capability"
        assert not service.get("cap_add") and not service.get("privileged"), name
    writes = {str(path.relative_to(ROOT)): lines
              for package in ("shared", "services") for path in (ROOT / package).rglob("*.py")
              if (lines := disk_writes(ast.parse(path.read_text(encoding="utf-8"))))}
    # spans as JSON lines, for `make run` and the tests: only with TRACES_FILE, which compose
    # does not set (its spans go to the collector)
    telemetry = ast.parse((ROOT / "shared" / "telemetry.py").read_text(encoding="utf-8"))
    exporter = [node for node in telemetry.body if isinstance(node, ast.ClassDef)
                and node.name in ("JsonLinesSpanExporter", "_SpanFile")]  # and its file
    assert len(exporter) == 2
    assert all(any(c.lineno <= line <= c.end_lineno for c in exporter)  # type: ignore[operator]
               for line in writes.pop("shared/telemetry.py", []))
    assert not any("TRACES_FILE" in environment(compose_service(name)) for name in SERVICES)
    assert writes == {}, "the services' root file system is read-only in compose"


def test_image_holds_what_the_services_need_at_run_time() -> None:
    from shared.policy import DEFAULT_POLICY

    copied = set()
    for keyword, value in dockerfile_instructions():
        if keyword == "COPY":
            for src in value.split()[:-1]:
                assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
                copied.add(src.rstrip("/"))
    assert {"shared", "services", "requirements.lock"} <= copied
    policy = Path(DEFAULT_POLICY).resolve().relative_to(ROOT)
    assert policy.parts[0] in copied, f"{policy} is read at start-up but not copied"

    ignored = {
        line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "var", ".git", ".env"} <= ignored
    assert not copied & ignored, "the .dockerignore hides files the image copies"


def _optional_regions(tree: ast.AST) -> set[int]:
    """Nodes under `if TYPE_CHECKING:` or `try: ... except ImportError:`: not run-time needs."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body: list[ast.stmt] = []
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            body = node.body
        elif isinstance(node, ast.Try) and any(
            h.type is not None and re.search(r"\b(ImportError|ModuleNotFoundError)\b", ast.unparse(h.type))
            for h in node.handlers
        ):
            body = node.body
        for stmt in body:
            skipped |= {id(n) for n in ast.walk(stmt)}
    return skipped


@cache
def _installed_file_owners() -> dict[str, str]:
    """Each installed file's distribution, by resolved path: read once for the four services
    (11,000 files; a distribution's metadata parsed once, not once a file)."""
    owners: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        for f in dist.files or ():
            owners[str(dist.locate_file(f).resolve())] = name
    return owners


@pytest.mark.parametrize("name", SERVICES)
def test_every_third_party_import_is_in_the_runtime_lock(name: str) -> None:
    # The image has requirements.lock only: a package that is merely in the developer's venv
    # (or the dev lock) makes the container die at import.
    package = ROOT / "services" / name
    if not package.is_dir():
        pytest.fail(f"services/{name} does not exist (yet)")
    modules: dict[str, str] = {}
    namespace_members: dict[str, dict[str, str]] = {}
    for path in [*(ROOT / "shared").rglob("*.py"), *package.rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _optional_regions(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                found = [(a.name, ()) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found = [(node.module, tuple(a.name for a in node.names))]
            else:
                continue
            for module, names in found:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("shared", "services", "__future__"):
                    where = str(path.relative_to(ROOT))
                    # `from opentelemetry import trace`: a namespace package has no file of
                    # its own; the distribution is the one that ships opentelemetry/trace.
                    modules.setdefault(module, where)
                    for name in names:
                        namespace_members.setdefault(module, {}).setdefault(f"{module}.{name}", where)

    owners = _installed_file_owners()

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    locked = {normal(m.group(1)) for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", lock, re.M)}

    def origin(module: str) -> str | None:
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            return None
        return spec.origin if spec is not None else None

    problems: dict[str, str] = {}
    checks = dict(modules)
    for module in modules:
        if origin(module) is None and module_exists(module):  # a namespace package
            del checks[module]
            checks.update({m: w for m, w in namespace_members.get(module, {}).items() if origin(m)})
    for module, where in sorted(checks.items()):
        found = origin(module)
        if found is None:
            problems.setdefault(module, f"{module} (imported in {where}) is not installed")
            continue
        dist = owners.get(str(Path(found).resolve()))
        if dist is None or normal(dist) not in locked:
            problems.setdefault(
                str(dist), f"{dist} (for {module}, imported in {where}) is not in requirements.lock"
            )
    assert not problems, "\n".join(problems.values())


# --- traces: collector and Jaeger -----------------------------------------------------------


def traces_pipeline() -> dict[str, list[str]]:
    return collector()["service"]["pipelines"]["traces"]


def test_collector_pipelines_use_only_defined_components() -> None:
    config = collector()
    pipelines = config["service"]["pipelines"]
    assert pipelines, "no pipelines"
    for pipeline_name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            defined = set(config.get(kind) or {})
            undefined = set(pipeline.get(kind, [])) - defined
            assert not undefined, f"pipeline {pipeline_name} uses undefined {kind} {undefined}"
        assert pipeline.get("receivers") and pipeline.get("exporters")
    processors = traces_pipeline()["processors"]
    assert processors[0] == "memory_limiter" and processors[-1] == "batch"


def test_services_send_spans_to_the_collector_http_receiver() -> None:
    endpoint = collector()["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    host, _, port = endpoint.rpartition(":")
    assert host in ("0.0.0.0", ""), "the receiver must listen beyond the container's loopback"
    services = compose()["services"]
    for name in SERVICES:
        url = urlsplit(environment(compose_service(name))["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert url.scheme == "http" and url.hostname in services, f"{name}: no such host {url.hostname}"
        assert str(url.port) == port, f"{name} sends OTLP/HTTP to {url.port}, the collector listens on {port}"
        assert "opentelemetry-collector" in services[url.hostname]["image"]


@pytest.mark.parametrize("name", SERVICES)
def test_the_collector_has_a_pipeline_for_every_signal_the_services_push(name: str) -> None:
    # A signal pushed to a collector with no pipeline for it is refused, and every service
    # would log the failed export once a minute.
    env = {k: interpolate(v) for k, v in environment(compose_service(name)).items()}
    pushed = {"traces"} if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") else set()
    if pushes_over_otlp(env):
        pushed.add("metrics")
    pipelines = {p.split("/")[0] for p in collector()["service"]["pipelines"]}
    assert pushed <= pipelines, f"{name} pushes {pushed - pipelines}: no pipeline takes them"


def test_metrics_are_pushed_only_when_asked_for() -> None:
    assert not pushes_over_otlp({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"})
    assert pushes_over_otlp({"OTEL_METRICS_EXPORTER": "prometheus, otlp"})
    assert pushes_over_otlp({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:4318/v1/metrics"})


def test_compose_mounts_this_collector_config() -> None:
    services = compose()["services"]
    name = next(n for n, s in services.items() if "opentelemetry-collector" in s.get("image", ""))
    service = services[name]
    config_path = next(a.split("=", 1)[1] for a in service["command"] if a.startswith("--config="))
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}
    assert (DEPLOY / mounts[config_path]).resolve() == COLLECTOR_FILE


def test_collector_exports_to_the_compose_jaeger() -> None:
    services = compose()["services"]
    exporters = collector()["exporters"]
    otlp = [e for e in traces_pipeline()["exporters"] if e.split("/")[0] in ("otlp", "otlp_grpc")]
    assert otlp, "no OTLP exporter in the traces pipeline"
    for exporter in otlp:
        host, _, port = exporters[exporter]["endpoint"].rpartition(":")
        assert host in services and services[host]["image"].startswith("jaegertracing/")
        assert port == "4317" and exporters[exporter]["tls"]["insecure"] is True
    jaeger_ports = [c for _, c in published_ports(services[host])]
    assert 16686 in jaeger_ports, "the Jaeger UI is not published"


def _deleted_keys(keys: list[str]) -> set[str]:
    config = collector()
    deleted = set()
    for processor in traces_pipeline()["processors"]:
        if processor.split("/")[0] != "attributes":
            continue
        for action in config["processors"][processor]["actions"]:
            if action["action"] not in ("delete", "hash"):
                continue
            for key in keys:
                if key == action.get("key") or (
                    action.get("pattern") and re.search(action["pattern"], key)
                ):
                    deleted.add(key)
    return deleted


def test_collector_drops_attributes_that_could_carry_personal_data() -> None:
    personal = [
        "caller", "caller.phone", "incident.caller.phone", "caller_name", "incident.caller.name",
        "phone", "name", "member.name", "description", "incident.description", "note",
        "order.note", "instructions", "location.address", "http.request.body",
        "messaging.message.body",
    ]
    semantic = [
        "messaging.destination.name", "messaging.consumer.group.name", "server.address",
        "client.address", "network.peer.address", "http.route", "url.path", "messaging.message.id",
        "messaging.message.body.size", "code.function.name", "incident.id", "incident.priority",
        "district",
    ]
    deleted = _deleted_keys(personal + semantic)
    assert sorted(set(personal) - deleted) == [], "kept: personal data"
    assert sorted(deleted & set(semantic)) == [], "deleted: attributes we need to read a trace"


def test_collector_masks_phone_numbers_and_identity_numbers_in_any_attribute() -> None:
    config = collector()
    patterns = [
        re.compile(p, re.ASCII)  # RE2's \b and \d are ASCII-only
        for processor in traces_pipeline()["processors"]
        if processor.split("/")[0] == "redaction"
        for p in config["processors"][processor].get("blocked_values", [])
    ]
    assert patterns, "no redaction processor with blocked_values in the traces pipeline"

    def masked(value: str) -> bool:
        return any(p.search(value) for p in patterns)

    for value in [
        "13812345678", "+8613812345678", "+86 139 1234 5678", "138-1234-5678",
        "报警人电话15012345678", "call 19912345678 now", "110105199003071234",
        "11010519900307123X", "/v1/devices/stream?token=abc.DEF-123",
    ]:
        assert masked(value), f"not masked: {value}"
    for value in [
        "1732345678901-0", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7",
        "2026-11-23T04:49:59+08:00", "P1", "12345678901", "31.230416,121.473701",
    ]:
        assert not masked(value), f"masked, but not personal: {value}"


# --- .env.example ---------------------------------------------------------------------------


def test_env_example_documents_every_variable() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    raw = "\n".join(
        line for line in COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    )
    interpolated = {m.group(1) for m in INTERPOLATION.finditer(raw)}
    for var in sorted(interpolated):
        at = [i for i, line in enumerate(lines) if line.startswith(f"{var}=")]
        assert at, f".env.example does not set {var}, which compose interpolates"
        assert at[0] > 0 and lines[at[0] - 1].startswith("#"), f"{var} has no comment line"
    required = {m.group(1) for m in INTERPOLATION.finditer(raw) if m.group(2) == ":?"}
    for var in required:
        assert f"{var}=" in lines, f".env.example must leave {var} empty, never ship a secret"

    passed = {var for s in compose()["services"].values() for var in environment(s)}
    text = "\n".join(lines)
    undocumented = sorted(v for v in passed if not re.search(rf"^#?\s*{v}=", text, re.M))
    assert not undocumented, f".env.example does not mention {undocumented}"
    assert 'secrets.token_urlsafe(32)' in text, "say how to generate ADMIN_TOKEN"


# --- the README's deployment ----------------------------------------------------------------

README = ROOT / "README.md"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
NUMBERS = {"four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}


def doc_section(path: Path, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)",
                      path.read_text(encoding="utf-8"), re.M | re.S)
    assert match, f"{path.name} has no section '## {title}'"
    return match.group(1)


def compose_up(text: str) -> list[str]:
    """The `docker compose … up` command of the section's shell block, as its words."""
    lines = [line.split("#")[0].split() for block in re.findall(r"^```sh\n(.*?)^```", text,
                                                               re.M | re.S)
             for line in block.splitlines() if line.startswith("docker compose")]
    (up,) = [words for words in lines if "up" in words]
    return up


def test_the_readme_deploys_as_the_deployment_doc_does() -> None:
    """An operator reads the README first: its three lines start what docs/deployment.md's
    walk-through starts (images built from this checkout, the root's .env), with as many
    secrets to fill in as compose refuses to start without, and its Jaeger address is the one
    compose publishes."""
    readme = doc_section(README, "Deployment on a station server")
    deployment = doc_section(DEPLOYMENT_DOC, "Deploy with compose")
    assert compose_up(readme) == compose_up(deployment), (compose_up(readme),
                                                          compose_up(deployment))
    raw = "\n".join(line for line in COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
                    if not line.lstrip().startswith("#"))
    required = {m.group(1) for m in INTERPOLATION.finditer(raw) if m.group(2) == ":?"}
    said = re.search(r"fill in its (\w+) secrets", readme)
    assert said and NUMBERS[said.group(1)] == len(required), (said, sorted(required))
    (published,) = [p for p in compose()["services"]["jaeger"]["ports"] if p.endswith(":16686")]
    host = published.rsplit(":", 2)[0]
    assert f"http://{host}:16686" in " ".join(readme.split()), \
        f"the README names another Jaeger address than compose's {published}"
