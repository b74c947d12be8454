"""Incident locks: one dispatch step per incident at a time, across workers and replicas.

A lock is a key `dispatch:lock:{incident}` holding a random token, with a short TTL, so a
worker that dies (SIGKILL, a lost host) frees its incidents within `ttl_s`. While a step
runs, one shared renewer extends every lock this process holds (one pipelined round trip
every ttl/3, however many steps run; a keeper task per step cost a task and a round trip
each). Releasing compares the token, so a lock that expired and was taken by another
worker is never deleted by the first.

Why not redis-py's `Lock`: a new incident's lock is taken by the same script that creates
the incident (store.first_step) and released by the script of the step's last writes
(`release_in_script`), two round trips fewer per incident; `Lock` can do neither. The key
and the token rule are the same, so the two could not disagree. Such a script must be safe
to run twice: redis-py sends it again when it lost the reply, after the lock it released
may have let other steps change the incident (store._OFFER and store._STEP_END write
nothing the second time). A transaction is no such script, so none releases the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

from shared.http import TryAgain
from shared.scripts import run_script

log = logging.getLogger(__name__)

TTL_S = 5.0
WAIT_S = 20.0
_RETRY_S = 0.02

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_RENEW = """
local kept = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    kept[#kept + 1] = 1
  else
    kept[#kept + 1] = 0
  end
end
return kept
"""


def key(incident_id: str) -> str:
    return f"dispatch:lock:{incident_id}"


def new_token() -> str:
    return secrets.token_hex(8)


class LockLost(TryAgain, RuntimeError):
    """A step's lock expired before its writes, which were not made (its end script found
    the lock gone, or its incident changed by another step): the step fails and its event
    is handled again; a command-room request gets 503 and asks again."""

    def __init__(self, incident_id: str) -> None:
        super().__init__(f"incident {incident_id} changed under this step, which wrote nothing")
        self.incident_id = incident_id


class LockBusy(TryAgain, TimeoutError):
    """Another step held the incident's lock for the whole wait (a stalled worker, whose
    lock the TTL frees): a stream step fails and is retried, a request gets 503."""

    def __init__(self, incident_id: str) -> None:
        super().__init__(f"incident {incident_id} is being changed by another step")
        self.incident_id = incident_id


@dataclass
class Held:
    """A lock this process holds; `released` once a script of the step was sent to release
    it."""

    incident_id: str
    token: str
    released: bool = False


class IncidentLocks:
    def __init__(self, redis: Redis, *, ttl_s: float = TTL_S, wait_s: float | None = None) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.wait_s = WAIT_S if wait_s is None else wait_s
        self._held: dict[str, Held] = {}  # by lock key
        self._renewer: asyncio.Task[None] | None = None

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)

    @asynccontextmanager
    async def hold(self, incident_id: str, *, token: str | None = None) -> AsyncIterator[Held]:
        """Hold the incident's lock for the block: waits up to `wait_s` for it, or adopts
        the one a script already took with `token`. Released on exit unless the block
        released it in its last script (`release_in_script`)."""
        if token is None:
            token = new_token()
            await self._acquire(incident_id, token)
        held = Held(incident_id, token)
        self._held[key(incident_id)] = held
        self._ensure_renewer()
        failed = False
        try:
            yield held
        except BaseException:
            failed = True  # a script that was to release it may not have run
            raise
        finally:
            self._held.pop(key(incident_id), None)
            if not held.released or failed:
                queued = held.released
                # From here this release speaks for the lock: a renewal already under way
                # finds it gone and must not report it lost.
                held.released = True
                try:
                    released = await run_script(self.redis, _RELEASE, [key(incident_id)], [token])
                except Exception as exc:  # Redis away: the TTL frees it
                    log.warning("lock on %s not released: %s", incident_id, type(exc).__name__)
                else:
                    if not released and not queued:
                        log.warning("lock on %s expired before release", incident_id)

    def guard(self, incident_id: str) -> tuple[str, str] | None:
        """The incident lock's key and this process's token while a step here holds it: a
        script given them writes nothing if the lock has expired and passed to another step
        (the step then fails with LockLost and is made again)."""
        held = self._held.get(key(incident_id))
        return (key(incident_id), held.token) if held is not None else None

    @staticmethod
    def release_in_script(held: Held) -> tuple[str, str]:
        """The lock's key and token for a script that releases it with the step's last
        writes, and the lock marked released from now: a renewal already under way may
        find it gone before the script's answer is read, and must not report it lost. A
        script that wrote nothing (and so kept the lock) hands it back with
        `kept_by_script`."""
        held.released = True
        return key(held.incident_id), held.token

    @staticmethod
    def kept_by_script(held: Held) -> None:
        held.released = False

    async def _acquire(self, incident_id: str, token: str) -> None:
        deadline = time.monotonic() + self.wait_s
        while not await self.redis.set(key(incident_id), token, nx=True, px=self.ttl_ms):
            if time.monotonic() >= deadline:
                raise LockBusy(incident_id)
            await asyncio.sleep(_RETRY_S)

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew(), name="incident-locks")

    async def _renew(self) -> None:
        """Extends every held lock every ttl/3 until none is held."""
        while self._held:
            await asyncio.sleep(self.ttl_s / 3)
            held = dict(self._held)
            if not held:
                return
            try:
                kept = await run_script(self.redis, _RENEW, list(held),
                                        [self.ttl_ms, *(h.token for h in held.values())])
            except Exception as exc:  # Redis away: the steps' own writes fail and retry
                log.warning("incident locks not renewed: %s", type(exc).__name__)
                continue
            for (_, h), ok in zip(held.items(), kept, strict=True):
                if not ok and not h.released:
                    log.warning("lock on %s lost before the step ended", h.incident_id)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
