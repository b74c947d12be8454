"""Lua scripts by EVALSHA: each script's text travels to Redis once, not with every call."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

_SCRIPTS: dict[str, AsyncScript] = {}


async def run_script(client: Redis | Pipeline, script: str, keys: list[str],
                     args: list[Any]) -> Any:
    """Runs `script` (or, on a pipeline, queues it: the pipeline loads it if Redis lacks it).
    A Redis that lost its scripts (a restart) gets the text again at once."""
    compiled = _SCRIPTS.get(script)
    if compiled is None:
        compiled = _SCRIPTS[script] = AsyncScript(None, script.encode())  # type: ignore[arg-type]
    return await compiled(keys=keys, args=args, client=client)
