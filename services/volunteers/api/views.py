"""How stored records look in HTTP answers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..domain.status import TeamState


def agency(r: Mapping[str, str]) -> dict[str, Any]:
    return {"id": r["id"], "district": r["district"], "name": r["name"], "kind": r["kind"],
            "role": r.get("role") or None}


def zone(r: Mapping[str, str]) -> dict[str, Any]:
    return {"id": r["id"], "district": r["district"], "name": r["name"],
            "owner_agency_id": r["owner_agency_id"], "polygon": json.loads(r["polygon"])}


def team(r: Mapping[str, str]) -> dict[str, Any]:
    return {"id": r["id"], "district": r["district"], "agency_id": r["agency_id"],
            "name": r["name"], "mode": r["mode"], "skills": json.loads(r.get("skills") or "[]"),
            "home_zone_id": r.get("home_zone_id") or None}


def member(r: Mapping[str, str]) -> dict[str, Any]:
    return {"id": r["id"], "district": r["district"], "name": r["name"],
            "agency_id": r["agency_id"], "team_id": r["team_id"], "role": r["role"],
            "phone": r.get("phone") or None}


RECORD_VIEWS = {"agencies": agency, "zones": zone, "teams": team, "members": member}


def state(team_id: str, s: TeamState) -> dict[str, Any]:
    return {
        "team_id": team_id,
        "status": s.status,
        "on_shift": s.on_shift,
        "shift_started_at": s.shift_started_at.isoformat() if s.shift_started_at else None,
        "shift_member_ids": sorted(s.shift_members),
        "open_orders": [{"order_id": o, "stage": stage} for o, stage in s.orders.items()],
    }
