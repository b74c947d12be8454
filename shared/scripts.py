"""Lua scripts: EVALSHA on a client (each script's text travels to Redis once), EVAL on a
pipeline."""

from __future__ import annotations

import inspect
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

_SCRIPTS: dict[str, AsyncScript] = {}


async def run_script(client: Redis | Pipeline, script: str, keys: list[str],
                     args: list[Any]) -> Any:
    """Runs `script` on a client, or queues it on a pipeline.

    On a client, by EVALSHA: a Redis that lost its scripts (a restart) gets the text again
    at once. On a pipeline, by EVAL with the text: redis-py's own script support asks Redis
    SCRIPT EXISTS before every pipeline that holds a script, a second round trip each time
    (a fifth of dispatch's CPU per incident), and an EVALSHA that met a restarted Redis
    inside MULTI would fail alone while the rest of the transaction applied. Redis caches a
    script sent by EVAL under its digest, so only the text's bytes travel again."""
    if isinstance(client, Pipeline):
        queued = client.eval(script, len(keys), *keys, *args)
        # a pipeline that WATCHes and has not begun its MULTI runs the command at once
        return await queued if inspect.isawaitable(queued) else queued
    compiled = _SCRIPTS.get(script)
    if compiled is None:
        compiled = _SCRIPTS[script] = AsyncScript(None, script.encode())  # type: ignore[arg-type]
    return await compiled(keys=keys, args=args, client=client)
