"""The roster's districts, asked of volunteers (their owner) over HTTP: intake makes a
reporting system's key, and dispatch a desk's token, only for districts volunteers knows.

A key scoped to a misspelt district (`chaoyang` for `Chaoyang`), or to one whose roster was
never imported, is accepted everywhere and its reports land where no team is and no desk
looks: flagged unassigned on a board nobody watches. Volunteers not answering is neither
yes nor no: nothing is made, and the admin asks again. A request naming one district the
roster does not hold (volunteers' reads, dispatch's duty and the admin's reads) is refused
the same way (`unknown_district`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx

from shared.http import ApiError, TryAgain

log = logging.getLogger(__name__)

DISTRICTS_PATH = "/v1/districts"  # volunteers' (services/volunteers/api/roster.py)
TIMEOUT_S = 5.0  # an admin's request, rare: a slow volunteers is worth waiting for
SHOWN = 20  # known districts a refusal names, at most


async def known_districts(http: httpx.AsyncClient, *, volunteers_url: str, key: str,
                          timeout_s: float = TIMEOUT_S) -> list[str]:
    """The districts volunteers' roster holds, asked with `key` (the services' key:
    shared.tokens.service_key), or TryAgain (503) when volunteers gives no list (within
    `timeout_s`)."""
    try:
        response = await http.get(f"{volunteers_url.rstrip('/')}{DISTRICTS_PATH}",
                                  headers={"Authorization": f"Bearer {key}"},
                                  timeout=timeout_s)
        response.raise_for_status()
        known = response.json()["districts"]
        if not isinstance(known, list) or not all(isinstance(d, str) for d in known):
            raise TypeError("districts is no list of names")
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        # (401 or 403: the services were given different ADMIN_TOKENs)
        how = (f"it answered {exc.response.status_code}"
               if isinstance(exc, httpx.HTTPStatusError) else type(exc).__name__)
        log.warning("the roster's districts were not read from volunteers: %s", how)
        raise TryAgain("volunteers, which keeps the roster, did not say which districts it "
                       "holds: the districts were not checked and nothing was made") from exc
    return known


async def require_known_districts(http: httpx.AsyncClient, districts: Sequence[str], *,
                                  volunteers_url: str, key: str) -> None:
    """Returns once volunteers' roster holds every one of `districts` (a body's
    `districts`). Raises ApiError 422 naming the places of those it does not (`field`: the
    first, `districts.<i>`) and the districts it does, or TryAgain (503) when volunteers
    gives no list."""
    check_known_districts(districts, await known_districts(http, volunteers_url=volunteers_url,
                                                           key=key))


def check_known_districts(districts: Sequence[str], known: Sequence[str]) -> None:
    """ApiError 422 naming the places of those of `districts` (a body's) not in `known` (the
    roster's), `field` the first (`districts.<i>`), and the districts the roster holds."""
    unknown = [i for i, district in enumerate(districts) if district not in known]
    if unknown:
        raise ApiError(422, "invalid_field",
                       _unknown_message(", ".join(f"districts.{i}" for i in unknown), known),
                       f"districts.{unknown[0]}")


def unknown_district(field: str, known: Sequence[str]) -> ApiError:
    """The 422 for a district the roster does not hold, given as `field` (a query's or a
    path's `district`), naming the districts it does hold."""
    return ApiError(422, "invalid_field", _unknown_message(field, known), field)


def _unknown_message(places: str, known: Sequence[str]) -> str:
    # The names given are not repeated (DESIGN: a message never echoes the body); their places are.
    if not known:
        holds = "the roster holds no district yet"
    else:
        names = sorted(known)
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
        holds = f"the roster holds {', '.join(names[:SHOWN])}{more} (names match exactly)"
    return (f"{places}: no such district in the roster; {holds}. Import the district's "
            "roster at volunteers first (POST /v1/roster/import), then ask again")
