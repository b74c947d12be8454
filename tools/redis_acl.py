"""Redis ACL users for the compose deployment, derived from the stream map.

One user per service, limited to its own key prefix, the streams it produces or consumes
(and the dead letters of those it consumes) and, for notify, its Pub/Sub channels; no
dangerous commands. An `admin` user for operators. The default user is off.

`python -m tools.redis_acl` prints the template that deploy/redis/users.acl.template holds;
deploy/redis/entrypoint.sh fills in the passwords when the Redis container starts.
"""

from __future__ import annotations

import sys

from shared import streams

# Commands every service needs beyond its keys: no KEYS, FLUSHALL, CONFIG, DEBUG, ...
# (@dangerous goes); INFO comes back for intake's WAITAOF check. CLIENT SETINFO is left out
# (unknown to Redis 7.0, and redis-py ignores its refusal). Of @scripting, what acts on the
# server's scripts and functions rather than the user's keys goes too: SCRIPT FLUSH (every
# service's cached scripts), SCRIPT KILL (another service's running one), FUNCTION (the
# server's libraries, which no service uses).
COMMANDS = ("-@all +@read +@write +@stream +@keyspace +@string +@hash +@set +@sortedset "
            "+@list +@geo +@scripting +@transaction +@connection +@pubsub -@dangerous "
            "-script|flush -script|kill -function "
            "+info +client|setname +client|id +ping")
CHANNELS = {"notify": ("notify:*",)}


def password_variable(service: str) -> str:
    return f"REDIS_PASSWORD_{service.upper()}"


def keys_of(service: str) -> list[str]:
    # "" matches only the empty key name: the services' scripts take '' for a key slot they
    # are not given (and check for it before touching it), and Redis checks every key an
    # EVAL names. Nothing is ever written under that name.
    names = [f"{streams.KEY_PREFIX[service]}*", ""]
    for stream in streams.ALL:
        if stream.producer == service or service in stream.consumers:
            names.append(stream.name)
        if service in stream.consumers:
            names.append(stream.dead_letters)
    return names


def rules(service: str, password: str) -> str:
    keys = " ".join(f"~{k}" for k in keys_of(service))
    channels = " ".join(f"&{c}" for c in CHANNELS.get(service, ()))
    return (f"user {service} on >{password} resetkeys {keys} resetchannels "
            f"{channels + ' ' if channels else ''}{COMMANDS}")


def render(passwords: dict[str, str], admin_password: str) -> str:
    # Off: nobody can log in as the default user. Yet Redis replays the AOF at start as
    # that user and checks its permissions again at each EXEC (redis/redis#14541): without
    # them every script or transaction that wrote twice would be dropped at the next start.
    lines = ["user default off ~* &* +@all",
             f"user admin on >{admin_password} ~* &* +@all"]
    lines += [rules(service, passwords[service]) for service in streams.SERVICES]
    return "\n".join(lines) + "\n"


def template() -> str:
    placeholders = {s: "${" + password_variable(s) + "}" for s in streams.SERVICES}
    return render(placeholders, "${REDIS_ADMIN_PASSWORD}")


if __name__ == "__main__":
    sys.stdout.write(template())
