"""shared.http: DESIGN's order of checks (401, 400/422, 404, 403, 409) for a token of the
wrong kind. FastAPI solves a route's dependencies before it validates its input, so a
`require` that raised at once answered 403 where a field was wrong; a route of
`InputFirstRoute` (every route of a ServiceApp, and the services' routers) refuses the
caller's kind once the input is valid, before the route's body runs."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field

from shared.http import (
    ApiError,
    AuthMiddleware,
    InputFirstRoute,
    Principal,
    Refused,
    ServiceApp,
    forbidden,
    install_error_handlers,
    require,
)

ADMIN = {"Authorization": "Bearer admin-token"}
DEVICE = {"Authorization": "Bearer device-token"}
JSON = {"Content-Type": "application/json"}

Admin = Annotated[Principal, Depends(require("admin"))]


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(max_length=5)


GOOD, WRONG = {"note": "hi"}, {"note": "far too long"}


# Dependencies that depend on `require` (module level: FastAPI resolves string annotations
# in the endpoint's module).
async def _notebook(_: Admin) -> str:  # takes the caller only to gate
    return "the notebook"


async def _signature(who: Admin) -> str:  # uses the caller
    return f"signed by {who.subject}"


Notebook = Annotated[str, Depends(_notebook)]
Signature = Annotated[str, Depends(_signature)]


async def _resolve(token: str) -> Principal | None:
    return Principal(kind="device", subject="phone-1") if token == "device-token" else None


def serving(app: FastAPI) -> FastAPI:
    install_error_handlers(app)
    app.add_middleware(AuthMiddleware, admin_token="admin-token", resolve=_resolve)
    return app


async def post(app: FastAPI, path: str, headers: dict[str, str] | None = None,
               body: Any = None, content: bytes | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        if content is not None:
            return await client.post(path, content=content, headers={**(headers or {}), **JSON})
        return await client.post(path, json=body, headers=headers or {})


def field_of(response: httpx.Response) -> tuple[int, str | None]:
    return response.status_code, response.json()["error"].get("field")


async def test_a_token_of_the_wrong_kind_is_told_of_a_wrong_field_before_it_is_refused() -> None:
    app, ran = serving(ServiceApp()), []

    @app.post("/notes")
    async def add_note(body: NoteIn, who: Admin) -> dict[str, str]:
        ran.append(body.note)
        return {"by": who.subject}

    assert (await post(app, "/notes", body=WRONG)).status_code == 401  # the token first
    assert field_of(await post(app, "/notes", DEVICE, WRONG)) == (422, "note")
    broken = await post(app, "/notes", DEVICE, content=b"{broken")
    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "bad_json")
    refused = await post(app, "/notes", DEVICE, GOOD)  # input right: the kind is wrong
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == {"code": "forbidden",
                                       "message": "this endpoint is for admin tokens"}
    assert field_of(await post(app, "/notes", ADMIN, WRONG)) == (422, "note")
    assert (await post(app, "/notes", ADMIN, GOOD)).json() == {"by": "admin"}
    assert ran == ["hi"]  # the admin's only


async def test_routers_of_the_route_class_check_input_first_however_deeply_included() -> None:
    app, ran = serving(ServiceApp()), []
    inner = APIRouter(prefix="/inner", route_class=InputFirstRoute)
    outer = APIRouter(prefix="/v1", route_class=InputFirstRoute)

    @inner.post("/notes/{note_id}")
    async def add_note(note_id: str, body: NoteIn, who: Admin) -> dict[str, str]:
        ran.append(note_id)
        return {"by": who.subject}

    outer.include_router(inner)
    app.include_router(outer)
    assert field_of(await post(app, "/v1/inner/notes/n1", DEVICE, WRONG)) == (422, "note")
    assert (await post(app, "/v1/inner/notes/n1", DEVICE, GOOD)).status_code == 403
    assert (await post(app, "/v1/inner/notes/n1", ADMIN, GOOD)).json() == {"by": "admin"}
    assert ran == ["n1"]


async def test_a_route_not_of_the_route_class_still_refuses_the_wrong_kind_at_once() -> None:
    # A router that forgot `route_class=InputFirstRoute` answers out of DESIGN's order, as
    # before, never lets the caller through: its endpoint would not check what it is given.
    app, ran = serving(ServiceApp()), []
    forgotten = APIRouter()

    @forgotten.post("/notes")
    async def add_note(_: Admin, body: NoteIn) -> dict[str, str]:
        ran.append(body.note)
        return {"added": body.note}

    app.include_router(forgotten)
    plain = serving(FastAPI())
    plain.post("/notes")(add_note)
    for each in (app, plain):
        assert (await post(each, "/notes", DEVICE, WRONG)).status_code == 403
        assert (await post(each, "/notes", DEVICE, GOOD)).status_code == 403
        assert (await post(each, "/notes", ADMIN, GOOD)).status_code == 200
    assert ran == ["hi", "hi"]


async def test_a_caller_refused_is_refused_wherever_require_is_depended_on() -> None:
    # The caller's kind reaches more than the endpoint's own parameters: a dependency that
    # takes it (and may ignore it), the route's `dependencies=`. None of them lets a wrong
    # kind through; each still tells a wrong field first.
    app, ran = serving(ServiceApp()), []

    @app.post("/gated")
    async def gated(body: NoteIn, book: Notebook) -> dict[str, str]:
        ran.append(book)
        return {"in": book}

    @app.post("/listed", dependencies=[Depends(require("admin"))])
    async def listed(body: NoteIn) -> dict[str, str]:
        ran.append("listed")
        return {"note": body.note}

    @app.post("/signed")
    async def signed(body: NoteIn, sign: Signature) -> dict[str, str]:
        ran.append(sign)
        return {"sign": sign}

    for path in ("/gated", "/listed"):
        assert field_of(await post(app, path, DEVICE, WRONG)) == (422, "note"), path
        refused = await post(app, path, DEVICE, GOOD)
        assert refused.status_code == 403, (path, refused.text)
        assert (await post(app, path, ADMIN, GOOD)).status_code == 200
    # The refusal, used as the caller it stands for, raises the 403 there: never a 500,
    # never a caller of no kind let through.
    assert (await post(app, "/signed", DEVICE, GOOD)).status_code == 403
    assert (await post(app, "/signed", ADMIN, GOOD)).json() == {"sign": "signed by admin"}
    assert ran == ["the notebook", "listed", "signed by admin"]


def test_a_refusal_cannot_be_taken_for_a_principal() -> None:
    refused = Refused(forbidden("this endpoint is for admin tokens"))
    assert not isinstance(refused, Principal)
    for name in ("kind", "subject", "districts", "team_id", "extra"):
        with pytest.raises(ApiError) as raised:
            getattr(refused, name)
        assert (raised.value.status, raised.value.message) == (
            403, "this endpoint is for admin tokens")


async def test_a_synchronous_endpoint_checks_input_first_too() -> None:
    app, ran = serving(ServiceApp()), []

    @app.post("/notes")
    def add_note(body: NoteIn, who: Admin) -> dict[str, str]:
        ran.append(body.note)
        return {"by": who.subject}

    assert field_of(await post(app, "/notes", DEVICE, WRONG)) == (422, "note")
    assert (await post(app, "/notes", DEVICE, GOOD)).status_code == 403
    assert (await post(app, "/notes", ADMIN, GOOD)).json() == {"by": "admin"}
    assert ran == ["hi"]


def test_the_route_class_keeps_what_fastapi_reads_of_the_endpoint() -> None:
    app = ServiceApp()

    @app.post("/notes", status_code=201)
    async def add_note(body: NoteIn, who: Admin) -> NoteIn:
        """Adds a note."""
        return body

    operation = app.openapi()["paths"]["/notes"]["post"]
    assert operation["operationId"] == "add_note_notes_post"
    assert operation["description"] == "Adds a note."
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NoteIn"}
    assert operation["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NoteIn"}


def _apps() -> list[tuple[str, FastAPI]]:
    from services.dispatch.config import Settings as DispatchSettings
    from services.dispatch.main import create_app as dispatch
    from services.intake.config import Settings as IntakeSettings
    from services.intake.main import create_app as intake
    from services.notify.config import Settings as NotifySettings
    from services.notify.main import create_app as notify
    from services.volunteers.config import Settings as VolunteersSettings
    from services.volunteers.main import create_app as volunteers

    # built, not started: nothing connects to Redis
    options: dict[str, Any] = {"redis_url": "redis://127.0.0.1:9", "admin_token": "a" * 20}
    return [("intake", intake(IntakeSettings(**options))),
            ("dispatch", dispatch(DispatchSettings(**options))),
            ("volunteers", volunteers(VolunteersSettings(**options))),
            ("notify", notify(NotifySettings(**options)))]


def test_every_route_of_the_four_services_checks_its_input_before_the_kind_of_token() -> None:
    for service, app in _apps():
        routes = [c.original_route for c in iter_route_contexts(app.routes)
                  if isinstance(c.original_route, APIRoute)]
        assert len(routes) > 5, service
        forgot = [f"{sorted(r.methods)} {r.path}" for r in routes
                  if not isinstance(r, InputFirstRoute)]
        assert forgot == [], service
