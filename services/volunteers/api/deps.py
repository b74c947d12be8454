"""Who may call: the callers' kinds as annotated dependencies (module level, so FastAPI can
resolve them from string annotations)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from shared.http import Principal, forbidden, require

# The roster's reads too: members' names and phones, every district's. Volunteers resolves
# no desk tokens; the command room sees its districts' teams through dispatch.
Admin = Annotated[Principal, Depends(require("admin"))]
Device = Annotated[Principal, Depends(require("device"))]
IdPath = Annotated[str, Path(min_length=1, max_length=64)]


async def _caller(request: Request) -> Principal:
    principal: Principal = request.scope["state"]["principal"]
    return principal


# Any authenticated caller, for a device route that takes a body or a query: FastAPI solves
# dependencies before it validates the input, so `Device` would answer 403 where DESIGN's
# order wants the 400/422 first. The route checks with `device` once its input is valid.
Caller = Annotated[Principal, Depends(_caller)]


def device(who: Principal) -> Principal:
    """`who`, if a device token; 403 otherwise (as `Device`)."""
    if who.kind != "device":
        raise forbidden("this endpoint is for device tokens")
    return who
