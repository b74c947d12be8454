"""Who may call: the callers' kinds as annotated dependencies (module level, so FastAPI can
resolve them from string annotations)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from shared.http import Principal, require

# The roster's reads too: members' names and phones, every district's. Volunteers resolves
# no desk tokens; the command room sees its districts' teams through dispatch.
Admin = Annotated[Principal, Depends(require("admin"))]
Device = Annotated[Principal, Depends(require("device"))]
IdPath = Annotated[str, Path(min_length=1, max_length=64)]

