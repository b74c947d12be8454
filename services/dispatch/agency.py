"""An agency's own desk (a security company under police–security joint control, a police
station): which agency a new desk token is for, asked of volunteers, the roster's owner.

Volunteers holds the agencies (DESIGN.md); dispatch keeps no copy. It asks volunteers'
`GET /v1/agencies/{id}` with the services' key once, when the admin makes the token: an
agency no import named, or of a district the token does not cover, is refused (422 naming
`agency_id`), and volunteers not answering is a 503 to ask again, as the districts are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from shared.http import ApiError, TryAgain

log = logging.getLogger(__name__)

AGENCY_PATH = "/v1/agencies/{agency_id}"  # volunteers' (services/volunteers/api/roster.py)
TIMEOUT_S = 5.0  # an admin's request, rare: a slow volunteers is worth waiting for


class RosterAgency(BaseModel):
    """An agency as volunteers answers it (its teams left out)."""

    id: str
    district: str
    name: str
    kind: str


async def roster_agency(http: httpx.AsyncClient, agency_id: str, districts: Sequence[str], *,
                        volunteers_url: str, key: str) -> RosterAgency:
    """The agency `agency_id` of volunteers' roster, of one of `districts`; else ApiError 422
    naming `agency_id`, or TryAgain (503) when volunteers gives no answer."""
    url = f"{volunteers_url.rstrip('/')}{AGENCY_PATH.format(agency_id=quote(agency_id, safe=''))}"
    try:
        response = await http.get(url, headers={"Authorization": f"Bearer {key}"},
                                  timeout=TIMEOUT_S)
        if response.status_code == 404:
            raise ApiError(422, "invalid_field", "agency_id: no such agency in the roster. "
                           "Import the agency's district at volunteers first (POST "
                           "/v1/roster/import), then ask again", "agency_id")
        response.raise_for_status()
        found = RosterAgency.model_validate_json(response.content)
    except (httpx.HTTPError, ValidationError) as exc:
        # (401 or 403: the services were given different ADMIN_TOKENs)
        how = (f"it answered {exc.response.status_code}"
               if isinstance(exc, httpx.HTTPStatusError) else type(exc).__name__)
        log.warning("an agency was not read from volunteers: %s", how)
        raise TryAgain("volunteers, which keeps the roster, did not say whether the agency "
                       "is in it: nothing was made") from exc
    if found.district not in districts:
        # the desk would read districts where none of the agency's teams is
        raise ApiError(422, "invalid_field", "agency_id: the agency is of a district the "
                       "token does not cover (`districts`)", "agency_id")
    return found
