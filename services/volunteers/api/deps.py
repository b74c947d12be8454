"""Who may call: the callers' kinds as annotated dependencies (module level, so FastAPI can
resolve them from string annotations)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from shared.http import Principal, require

Admin = Annotated[Principal, Depends(require("admin"))]
Reader = Annotated[Principal, Depends(require("admin", "dispatcher"))]
Device = Annotated[Principal, Depends(require("device"))]
IdPath = Annotated[str, Path(min_length=1, max_length=64)]
