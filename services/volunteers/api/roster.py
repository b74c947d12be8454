"""Roster routes (admin): the district import, paginated lists, look-ups, explicit removals."""

from __future__ import annotations

import json
import logging
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from shared import audit
from shared.events import utcnow
from shared.fieldnames import is_field_name
from shared.http import (
    ApiError,
    InputFirstRoute,
    answers_within,
    conflict,
    error_body,
    not_found,
)
from shared.http import Refused as WrongKind

from ..config import Settings
from ..domain.roster import (
    ENTITIES,
    MAX_ERRORS,
    InvalidRoster,
    RosterDoc,
    parse_document,
    shown,
    shown_as_of,
)
from ..domain.roster_csv import parse_csv
from ..domain.status import Refused, expire_check_ins
from ..store import devices as devices_store
from ..store import imports
from ..store import points as points_store
from ..store import roster as roster_store
from ..store import shifts as shifts_store
from ..store import teams as teams_store
from ..store.tx import Contended
from . import views
from .deps import (
    Admin,
    AdminOrCoordinator,
    AdminOrService,
    IdPath,
    Reader,
    check_district,
    check_own,
    check_own_record,
    check_own_volunteers,
    require_district,
    required_district,
)

log = logging.getLogger(__name__)
MAX_PAGE = 500
# A city's roster (DOMAIN: 11,000 volunteers) is seconds of writes, each quick: its bound,
# where other requests are answered 503 after REQUEST_TIMEOUT_S (shared.http.AnswerWithin)
IMPORT_BOUND_S = 120.0
# The ids of stored rows an import left out that its answer names (all are counted): a
# partial file (one agency's members) leaves out thousands, and a coordinator who removes
# those who left works through a few at a time.
NOT_IN_IMPORT_IDS = 1_000

_AS_OF = ("optional: when the sender's roster was taken, ISO 8601 with its offset (at most "
          "5 minutes ahead of the service's clock). An import older than the last one applied "
          "for its district is refused (409, field `as_of`) and changes nothing, so an HR or "
          "agency system retrying a document after a newer one was applied cannot roll the "
          "roster back; the same `as_of` again is a retry, taken (the same document changes "
          "nothing). Without it, an import is taken as it comes and leaves the district's "
          "`as_of` as it was. The answer's `as_of` is the district's latest (null: none).")
_IMPORT_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"type": "object", "description": "the roster document of DESIGN.md: "
                         "district, agencies, zones, teams, members; and `as_of`, optional"},
                        {"type": "object", "description": "CSV texts: {\"district\", \"csv\": "
                         "{\"agencies\": \"<csv>\", \"zones\": ..., \"teams\": ..., "
                         "\"members\": ...}, \"as_of\"?}"},
                    ]
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "district": {"type": "string"},
                        "as_of": {"type": "string", "format": "date-time",
                                  "description": _AS_OF},
                        **{e: {"type": "string", "format": "binary"} for e in ENTITIES},
                    },
                    "required": ["district"],
                }
            },
        },
    }
}


async def read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def multipart_fields(content_type: str, body: bytes) -> dict[str, str]:
    """Form fields and files of a multipart/form-data body, by field name (or file stem).

    python-multipart is not a dependency; the standard library's MIME parser reads forms.
    """
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        raise ApiError(400, "bad_body", "the multipart body cannot be read")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        if isinstance(name, tuple):
            name = name[2]
        key = str(name or "")
        if filename and key not in ENTITIES:
            key = filename.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        payload = part.get_payload(decode=True)
        if not key or not isinstance(payload, bytes):
            continue
        fields[key.strip().lower()] = uploaded_text(shown(key), payload)
    return fields


# How a spreadsheet file begins: .xlsx is a zip archive, .xls an OLE compound document.
WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


def uploaded_text(where: str, payload: bytes) -> str:
    """An uploaded file's text: UTF-8 (a BOM is fine), else GB18030, GBK's superset.

    Excel's "CSV (逗号分隔)" on a Chinese Windows writes the system's code page, GBK; its
    "CSV UTF-8" is another entry of the list, and WPS writes either. A file of Chinese names
    in GBK is almost never valid UTF-8, so the order decides nothing a roster would hold.
    A workbook sent as it is (the spreadsheet, not its CSV) is told so."""
    if payload.startswith(WORKBOOK_MAGIC):
        raise ApiError(422, "invalid_field", f"{where} is an Excel workbook, not CSV: save it "
                       "as CSV (\"CSV UTF-8\" or \"CSV\") and send that file", where)
    try:
        return payload.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return payload.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise ApiError(422, "invalid_field", f"{where} is not CSV text in UTF-8 or GBK: save "
                       "it as CSV (\"CSV UTF-8\") and send that file", where) from exc


def parse_import(content_type: str, body: bytes) -> RosterDoc:
    """Pick the format by content type: multipart CSV files, JSON CSV texts, a JSON document."""
    if content_type.split(";")[0].strip().lower() == "multipart/form-data":
        fields = multipart_fields(content_type, body)
        district = fields.pop("district", None)
        return parse_csv(district, fields, fields.pop("as_of", None))
    try:
        data = json.loads(body)
    # json raises RecursionError for arrays or objects nested past the recursion limit
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "bad_json", "the request body is not valid JSON") from exc
    if isinstance(data, dict) and "csv" in data:
        extra = [k for k in data if k not in ("district", "csv", "as_of")]
        if extra and is_field_name(extra[0]):
            raise ApiError(422, "invalid_field", f"{extra[0]} is not a known field", extra[0])
        if extra:  # the sender's data, not a misspelt field: not named back
            raise ApiError(422, "invalid_field", "the body holds a key that is no known field "
                           "(not shown: it is no field name)", "(body)")
        files = data["csv"]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise ApiError(422, "invalid_field",
                           "csv must map agencies/zones/teams/members to CSV text", "csv")
        return parse_csv(data.get("district"), files, data.get("as_of"))
    return parse_document(data)


def invalid_roster_response(exc: InvalidRoster) -> JSONResponse:
    body = error_body("invalid_roster", exc.summary(), exc.errors[0].path)
    body["error"]["errors"] = [e.as_dict() for e in exc.errors]
    body["error"]["error_count"] = exc.total
    return JSONResponse(body, status_code=422)


async def refused_roster(_: Request, exc: Exception) -> JSONResponse:
    """The app's answer to InvalidRoster: raised by the import's dependency (the document on
    its own) or by its route (the document against the stored roster)."""
    assert isinstance(exc, InvalidRoster)
    log.info("roster import refused: %d error(s)", exc.total)
    return invalid_roster_response(exc)


def build_router(*, settings: Settings, redis: Redis, broker: RedisBroker) -> APIRouter:
    router = APIRouter(prefix="/v1", route_class=InputFirstRoute)
    ledger_ttl_s = points_store.ledger_ttl(settings.retention_days)  # patrol points on leaving

    async def roster_sent(request: Request, who: AdminOrCoordinator) -> RosterDoc:
        """The roster the request sends, read and checked on its own (a malformed one:
        400/422, InvalidRoster). A dependency, not the route: a dependency runs before a
        token of the wrong kind is refused, so its input is told first (DESIGN's order)."""
        body = await read_body(request, settings.import_max_bytes)
        doc = parse_import(request.headers.get("content-type", "application/json"), body)
        if isinstance(who, WrongKind):  # refused once this returns
            # The document's own errors. The admin hears them with those against the
            # stored roster, together (check_references): what is stored is not theirs.
            doc.raise_errors()
        elif who.kind == "coordinator" and doc.district not in who.districts:
            doc.raise_errors()  # as a wrong kind's: another district's roster is not its
            check_district(who, doc.district)
        return doc

    @router.post("/roster/import", summary="Upsert a district's roster (admin): JSON or CSV",
                 description=f"`as_of`: {_AS_OF}", openapi_extra=_IMPORT_DOC,
                 response_model=None)
    @answers_within(IMPORT_BOUND_S)
    async def import_roster(who: AdminOrCoordinator,
                            doc: RosterDoc = Depends(roster_sent)) -> Any:
        try:
            # against the stored roster (InvalidRoster: refused_roster answers it)
            result = await imports.import_roster(
                redis, doc=doc, now=utcnow(), max_patrol_hours=settings.max_patrol_hours,
                ledger_ttl_s=ledger_ttl_s, check_in_grace_hours=settings.checkin_grace_hours,
                coordinator=who.kind == "coordinator")
        except imports.NotACoordinatorsChange as exc:
            first = exc.errors[0]
            more = f" (and {len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""
            log.info("roster import for district %s refused: a coordinator's, changing "
                     "zones or rows beyond its volunteers'", doc.district)
            # every row refused, as a 422 lists them: the file is mended in one go
            body = error_body("forbidden", f"nothing was imported: {first.where} "
                              f"{first.message}{more}", first.path)
            body["error"]["errors"] = [e.as_dict() for e in exc.errors[:MAX_ERRORS]]
            body["error"]["error_count"] = len(exc.errors)
            return JSONResponse(body, status_code=403)
        except Contended as exc:
            raise ApiError(503, "unavailable", "the roster changed during the import; retry") \
                from exc
        except imports.StaleImport as exc:
            log.info("roster import for district %s refused: older than the last one",
                     doc.district)
            raise ApiError(409, "conflict", exc.message, "as_of") from exc
        await audit.record(redis, "volunteers", who, "roster.import", doc.district,
                           json.dumps(result.plan.counts, sort_keys=True))
        # A move takes the member off the old team's shift and reconnects their phones:
        # the counts alone do not say whom it took where.
        for member_id, old_team, new_team in result.moved:
            await audit.record(redis, "volunteers", who, "member.move", member_id,
                               f"{old_team} -> {new_team}")
        left_out = {entity: len(ids) for entity, ids in result.not_in_import.items() if ids}
        log.info("roster import for district %s: %s; stored rows not in it, kept: %s",
                 doc.district, result.plan.counts, left_out or "none")
        return {"district": doc.district, "counts": result.plan.counts,
                "unit_status_published": result.announced,
                "as_of": shown_as_of(result.as_of) if result.as_of else None,
                "not_in_import": {entity: {"count": len(ids), "ids": ids[:NOT_IN_IMPORT_IDS]}
                                  for entity, ids in result.not_in_import.items()}}

    # Intake and dispatch ask it (shared.districts) before they make a reporting system's key
    # or a desk's token: one for a district no import named would be watched by no one.
    @router.get("/districts", summary="The districts whose roster was imported (admin, "
                "services)")
    async def districts(_: AdminOrService) -> dict[str, list[str]]:
        return {"districts": await roster_store.districts(redis)}

    def list_route(entity: str) -> None:
        view = views.RECORD_VIEWS[entity]

        async def list_entities(
            who: AdminOrCoordinator,
            district: Annotated[str | None, Query(max_length=64)] = None,
            cursor: Annotated[str | None, Query(max_length=64)] = None,
            limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        ) -> dict[str, Any]:
            required_district(who, district)  # a coordinator's: one of its own
            if district is not None:
                await require_district(redis, district)
            if entity == "members" and who.kind == "coordinator" and district is not None:
                # its volunteers (whom it calls); officers' and guards' names and phones
                # are their agencies' business
                records, next_cursor = await roster_store.volunteers_page(
                    redis, district=district, cursor=cursor, limit=limit)
            else:
                records, next_cursor = await roster_store.page(
                    redis, entity, district=district, cursor=cursor, limit=limit)
            return {"items": [view(r) for r in records], "next_cursor": next_cursor}

        router.add_api_route(f"/{entity}", list_entities, methods=["GET"],
                             summary=f"List {entity}, ordered by id (admin; a coordinator: "
                             "of one of its districts)")

    for entity in ENTITIES:
        # GET /v1/zones is points.district_zones: a district's zones whole, as dispatch's
        # zone projection reads them; a paginated list on the same path is never reached.
        if entity != "zones":
            list_route(entity)

    # Dispatch asks it (services/dispatch/agency.py) before it makes an agency's desk token:
    # one for an agency no import named, or of another district, would read nothing.
    @router.get("/agencies/{agency_id}", summary="An agency and its teams (admin, services, "
                "its district's coordinator)")
    async def get_agency(agency_id: IdPath, who: Reader) -> dict[str, Any]:
        record = await roster_store.get(redis, "agencies", agency_id)
        if not record:
            raise not_found("agency")
        check_own(who, record, "agency")
        return {**views.agency(record),
                "team_ids": await roster_store.agency_team_ids(redis, agency_id)}

    @router.get("/zones/{zone_id}", summary="A zone (admin, its district's coordinator)")
    async def get_zone(zone_id: IdPath, who: AdminOrCoordinator) -> dict[str, Any]:
        record = await roster_store.get(redis, "zones", zone_id)
        if not record:
            raise not_found("zone")
        check_own(who, record, "zone")
        return views.zone(record)

    @router.get("/teams/{team_id}", summary="A team: profile, status, latest position "
                "(admin, services, its district's coordinator)")
    async def get_team(team_id: IdPath, who: Reader) -> dict[str, Any]:
        record = await roster_store.get(redis, "teams", team_id)
        if not record:
            raise not_found("team")
        # a police patrol's live position and who is on its shift: not a coordinator's
        await check_own_volunteers(redis, who, record, "team")
        plan = await shifts_store.get_plan(redis, team_id)
        # As it stands now (notify asks who is on the shift): a check-in that ran out is
        # over, whether or not the sweep has come by yet.
        state = expire_check_ins(await teams_store.team_state(redis, team_id), now=utcnow(),
                                 limit=settings.check_in_limit()).state
        return {
            **views.team(record),
            "state": views.state(team_id, state),
            "position": await teams_store.latest_position(redis, team_id),
            "member_ids": await roster_store.team_member_ids(redis, team_id),
            "shift_plan": plan.model_dump(mode="json") if plan else None,
        }

    @router.get("/members/{member_id}", summary="A member and their devices (admin, their "
                "district's coordinator)")
    async def get_member(member_id: IdPath, who: AdminOrCoordinator) -> dict[str, Any]:
        record = await roster_store.get(redis, "members", member_id)
        if not record:
            raise not_found("member")
        await check_own_volunteers(redis, who, record, "member")
        return {**views.member(record),
                "devices": await devices_store.devices_of(redis, member_id)}

    @router.delete("/members/{member_id}", status_code=204,
                   summary="Remove a member; their devices are revoked (admin, their "
                   "district's coordinator)")
    async def delete_member(member_id: IdPath, who: AdminOrCoordinator) -> Response:
        await check_own_record(redis, who, "members", member_id, "member")
        if not await roster_store.delete_member(redis, broker=broker, member_id=member_id,
                                                now=utcnow(),
                                                max_patrol_hours=settings.max_patrol_hours,
                                                ledger_ttl_s=ledger_ttl_s,
                                                check_in_limit=settings.check_in_limit()):
            raise not_found("member")
        await audit.record(redis, "volunteers", who, "member.delete", member_id)
        log.info("member %s removed", member_id)
        return Response(status_code=204)

    @router.delete("/teams/{team_id}", status_code=204,
                   summary="Remove a team without members or open orders (admin, its "
                   "district's coordinator)")
    async def delete_team(team_id: IdPath, who: AdminOrCoordinator) -> Response:
        await check_own_record(redis, who, "teams", team_id, "team")
        try:
            removed = await roster_store.delete_team(redis, broker=broker, team_id=team_id)
        except Refused as exc:
            raise conflict(exc.message) from exc
        if not removed:
            raise not_found("team")
        await audit.record(redis, "volunteers", who, "team.delete", team_id)
        log.info("team %s removed", team_id)
        return Response(status_code=204)

    @router.delete("/zones/{zone_id}", status_code=204,
                   summary="Remove a zone no team has as its home zone (admin)")
    async def delete_zone(zone_id: IdPath, who: Admin) -> Response:
        try:
            removed = await roster_store.delete_zone(redis, zone_id=zone_id)
        except Refused as exc:
            raise conflict(exc.message) from exc
        if removed is None:
            raise not_found("zone")
        # The station that lost the ground: who asks later why a place's hand-overs went
        # elsewhere finds it here (the polygon is gone with the zone).
        await audit.record(redis, "volunteers", who, "zone.delete", zone_id,
                           f"{removed['district']} {removed['owner_agency_id']}")
        log.info("zone %s of district %s removed", zone_id, removed["district"])
        return Response(status_code=204)

    return router
