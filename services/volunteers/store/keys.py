"""Every Redis key volunteers owns (prefix `roster:`), in one place.

Entity ids are global (an id belongs to one district). Keys that a future Redis Cluster must
keep together are few: each transaction here touches one team, one order, or one step of one
district's import, and the cluster issue will add `{district}` hash tags where needed.
"""

from __future__ import annotations

PREFIX = "roster:"
ENTITY_KEY = {"agencies": "agency", "zones": "zone", "teams": "team", "members": "member"}


def entity(kind: str, entity_id: str) -> str:
    """The profile hash of an agency, zone, team or member (kind: the plural entity name)."""
    return f"roster:{ENTITY_KEY[kind]}:{entity_id}"


def agency(agency_id: str) -> str:
    return f"roster:agency:{agency_id}"


def team(team_id: str) -> str:
    return f"roster:team:{team_id}"


def member(member_id: str) -> str:
    return f"roster:member:{member_id}"


def index(kind: str, district: str | None) -> str:
    """Sorted set (score 0, ordered by id) of an entity's ids, per district or all."""
    return f"roster:idx:{kind}:{district}" if district else f"roster:idx:{kind}"


def districts() -> str:
    return "roster:districts"


def team_members(team_id: str) -> str:
    return f"roster:team_members:{team_id}"


def agency_teams(agency_id: str) -> str:
    return f"roster:agency_teams:{agency_id}"


def zones_rev(district: str) -> str:
    """Bumped by every import that changes a zone: the lookup caches check it."""
    return f"roster:zones_rev:{district}"


def zones_importing(district: str) -> str:
    """Set (to the district's zones_rev before it) while a committed import's zones are
    written in several steps: the district's map is half re-cut until it is gone."""
    return f"roster:zones_importing:{district}"


def state(team_id: str) -> str:
    return f"roster:state:{team_id}"


def check_ins() -> str:
    """Sorted set: team id -> its earliest check-in still on its shift (epoch ms), for the
    sweep that ends the check-ins nobody ended (`store.check_ins`). Written with the state
    by every transition that changes who is on the shift; one that lost members elsewhere
    (an import, a removal) leaves its entry early, which the sweep corrects."""
    return "roster:check_ins"


def order(order_id: str) -> str:
    return f"roster:order:{order_id}"


def incident_resolutions(incident_id: str) -> str:
    """Set of the incident's orders that their teams resolved (their records name who was
    on the shift then)."""
    return f"roster:resolutions:{incident_id}"


def hazard_confirmed(incident_id: str) -> str:
    """Set of the teams whose resolution of the incident its closing confirmed as a hazard
    report (a resolution read after the closing pays itself)."""
    return f"roster:hazard_confirmed:{incident_id}"


def hazard_reporters(incident_id: str) -> str:
    """Hash of the members who reported the incident from the street -> the team the first
    reading of its closing found them on (whose resolution does not confirm their report)."""
    return f"roster:hazard_reporters:{incident_id}"


def position(team_id: str) -> str:
    return f"roster:pos:{team_id}"


def plan(team_id: str) -> str:
    return f"roster:plan:{team_id}"


def plans(district: str) -> str:
    return f"roster:plans:{district}"


def device(device_id: str) -> str:
    return f"roster:device:{device_id}"


def member_devices(member_id: str) -> str:
    return f"roster:member_devices:{member_id}"


def token(token_hash: str) -> str:
    return f"roster:token:{token_hash}"


def ledger_entry(entry_id: str) -> str:
    return f"roster:ledger:{entry_id}"


def points_history(member_id: str) -> str:
    return f"roster:points:history:{member_id}"


def points_seq(member_id: str) -> str:
    """The number of the newest entry of the member's history (store.points.AWARD_LUA
    names it from the history's key, so that the awards' callers pass no extra key)."""
    return f"{points_history(member_id)}:seq"


def adjustment_retry(digest: str) -> str:
    """The key given to a coordinator's adjustment sent without one, by a digest of its
    member, amount and reason: its retry within the window gets the same key."""
    return f"roster:points:adjust_retry:{digest}"


def points_balance(member_id: str) -> str:
    return f"roster:points:balance:{member_id}"


def leaderboard(district: str) -> str:
    return f"roster:points:board:{district}"


def import_lock() -> str:
    """Held by the one roster import (of any district: ids are global) that is validating or
    writing; removals wait for it."""
    return "roster:import:lock"


def import_as_of(district: str) -> str:
    """The latest `as_of` (ISO 8601, UTC) of the district's imports that gave one: an import
    older than it is refused. Written with the import's commit."""
    return f"roster:import:as_of:{district}"


def import_journal() -> str:
    """List of an import's steps not yet written, oldest first: a committed import that a
    crash cut off is finished from it."""
    return "roster:import:journal"


def import_staging(token: str) -> str:
    """An import's journal while it is being written, renamed to `import_journal` once whole."""
    return f"roster:import:staging:{token}"


def coordinator(coordinator_id: str) -> str:
    """Hash of a volunteer coordinator: name, districts, token hash, created and revoked
    times. Kept KPI_DAYS once revoked: the audit trail names `coordinator:<id>`."""
    return f"roster:coordinator:{coordinator_id}"


def coordinators() -> str:
    """Set of every coordinator's id, revoked ones too (until their record expires)."""
    return "roster:coordinators"


def coordinator_token(token_hash: str) -> str:
    """A live coordinator token's sha256 -> its coordinator's id; deleted at revocation."""
    return f"roster:coordinator_token:{token_hash}"
