"""The teams planned for the shift being worked now in a district, and which of them have
not checked in: the command room's roll call (DOMAIN.md: at 08:10 the duty dispatcher calls
the teams of the main shift that are not in).

Volunteers owns the shift plans and the check-ins (DESIGN.md); dispatch reads neither's
keys and keeps no projection of the plans: it asks volunteers' `GET /v1/shifts/now` with the
admin token when the console asks (about once a minute per desk), caches nothing, and
answers a desk for its own districts only (the route checks the district first). Volunteers
resolves no desk tokens: the command room sees its districts' teams through dispatch.
Volunteers not answering is a 503 to ask again (TryAgain), never "everyone is in".
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from pydantic import AwareDatetime, BaseModel, ValidationError

from shared.http import TryAgain

log = logging.getLogger(__name__)

SHIFTS_NOW_PATH = "/v1/shifts/now"  # volunteers' (services/volunteers/api/shifts.py)
TIMEOUT_S = 3.0  # read beside the console's refresh, never holding it back


class PlannedTeam(BaseModel):
    """A team planned on a shift being worked, as volunteers answers it."""

    team_id: str
    team_name: str
    agency_id: str
    agency_name: str | None = None
    agency_kind: str | None = None
    shift: str
    start: AwareDatetime
    end: AwareDatetime
    checked_in: bool
    checked_in_at: AwareDatetime | None = None


class ShiftsNow(BaseModel):
    district: str
    at: AwareDatetime
    teams: list[PlannedTeam]


async def shift_check_ins(http: httpx.AsyncClient, district: str, *, volunteers_url: str,
                          key: str, agency_id: str | None = None) -> dict[str, Any]:
    """`{"district", "at", "planned", "not_checked_in", "teams"}`: the district's teams
    planned on the shifts being worked at volunteers' `at` (`agency_id`'s only, for its own
    desk), those not checked in first (whom to call), then by the shift's start and the
    team's name. Raises TryAgain (503) when volunteers gives no answer (a district its
    roster does not hold is refused before, by the route's check of the district)."""
    try:
        response = await http.get(f"{volunteers_url.rstrip('/')}{SHIFTS_NOW_PATH}",
                                  params={"district": district},
                                  headers={"Authorization": f"Bearer {key}"},
                                  timeout=TIMEOUT_S)
        response.raise_for_status()
        found = ShiftsNow.model_validate_json(response.content)
    except (httpx.HTTPError, ValidationError) as exc:
        # (401 or 403: the services were given different ADMIN_TOKENs; 404: a volunteers
        # older than this route)
        how = (f"it answered {exc.response.status_code}"
               if isinstance(exc, httpx.HTTPStatusError) else type(exc).__name__)
        log.warning("the shifts worked now were not read from volunteers: %s", how)
        raise TryAgain("volunteers, which keeps the shift plans and check-ins, did not say "
                       "which teams are due on shift now") from exc
    teams = sorted((t for t in found.teams if agency_id is None or t.agency_id == agency_id),
                   key=lambda t: (t.checked_in, t.start, t.team_name, t.team_id))
    return {
        "district": district, "at": found.at.isoformat(), "planned": len(teams),
        "not_checked_in": sum(1 for t in teams if not t.checked_in),
        "teams": [t.model_dump(mode="json") for t in teams],
    }

