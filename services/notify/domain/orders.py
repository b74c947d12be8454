"""What a team sees of an order: the WebSocket frames, the push payload and the SMS text.

Need to know: only police teams get the caller and the description, and only when the
event carries them; for every other kind they are dropped before anything is stored.
Nor does a team see an order issued longer ago than notify remembers orders (`outlived`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any

from pydantic import StringConstraints

from shared.events import Event, OrderAmended, OrderIssued
from shared.labels import DEFAULT_LANGUAGE, Language, label

# Web Push payloads must stay under ~4 KB once encrypted.
PUSH_PAYLOAD_LIMIT = 3000

# Order ids as dispatch makes them (shared.events.new_id("ord"): `ord_` and hex). An id
# from a device (a frame, a URL) must be one before a key is built from it: `<id>:attempts`
# would name notify's own list of the order's attempts, read as an order (WRONGTYPE).
ORDER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
OrderId = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                           pattern=ORDER_ID_PATTERN)]


# dispatch stamps `occurred_at` by its clock, notify compares it with its own and Redis
# expires the record by its own: this much of ORDER_TTL_S covers clocks that differ a little
CLOCK_ALLOWANCE_S = 60.0


def outlived(event: Event, *, now: datetime, remembered_s: float) -> bool:
    """Whether `event` is older than notify's record of its order may be (ORDER_TTL_S,
    `remembered_s`, from when notify stored it, never before its issue): the record may be
    gone, so the event cannot tell a new order from one handled long ago. Streams and dead
    letters are kept longer (RETENTION_DAYS), so such an order.issued comes from a replayed
    dead letter or a group reading the stream again from 0, never from dispatch now: it is
    neither stored nor announced, lest the team's phones ring for a stale order."""
    allowance = min(CLOCK_ALLOWANCE_S, remembered_s / 2)
    return (now - event.occurred_at).total_seconds() >= remembered_s - allowance


def for_team(order: OrderIssued) -> OrderIssued:
    """The order as notify keeps it: caller data only for police teams."""
    if order.agency_kind == "police":
        return order
    if order.caller is None and order.description is None:
        return order
    return order.model_copy(update={"caller": None, "description": None})


def _public_order(order: OrderIssued) -> dict[str, Any]:
    """What every channel may show of an order: never the caller or the description."""
    body: dict[str, Any] = {
        "type": "order",
        "order_id": order.order_id,
        "incident_id": order.incident_id,
        "category": order.category,
        "priority": order.priority,
        "location": {"lat": order.location.lat, "lon": order.location.lon},
        "ack_by": order.ack_by.isoformat() if order.ack_by else None,
        "flags": list(order.flags),
        "kind": order.kind,
    }
    if order.location.address:
        body["address"] = order.location.address
    if order.instructions:
        body["instructions"] = order.instructions
    if order.escort:  # volunteers on a P1: whether police or security goes with them
        body["escort"] = order.escort
    return body


def _escorting(order: OrderIssued) -> list[dict[str, str]]:
    assert order.escorting is not None
    return [team.model_dump() for team in order.escorting]


def order_frame(order: OrderIssued, *, traceparent: str | None) -> dict[str, Any]:
    frame = {**_public_order(order), "traceparent": traceparent}
    # police or security on a P1: the volunteer teams it escorts (empty: no longer). Not in
    # _public_order: the push and SMS texts keep their size and words.
    if order.escorting is not None:
        frame["escorting"] = _escorting(order)
    if order.filing_due:
        frame["filing_due"] = order.filing_due.isoformat()
    if order.agency_kind == "police":
        if order.caller is not None:
            frame["caller"] = order.caller.model_dump(exclude_none=True)
        if order.description is not None:
            frame["description"] = order.description
    return frame


CALLER_FIELDS = ("caller", "description")


def for_reader(frame: dict[str, Any], *, police: bool) -> dict[str, Any]:
    """An order's frame as one device may see it: caller data only for a police member's.

    The order kept caller data by the kind dispatch knew its team as when it issued it; the
    device's own kind is its member's agency now (its token, checked at connect). A team a
    roster import moved from the police to a security company keeps its police orders, and
    dispatch may issue one more before it hears of the move: its guards see neither."""
    if police or not any(field in frame for field in CALLER_FIELDS):
        return frame
    return {key: value for key, value in frame.items() if key not in CALLER_FIELDS}


def amended_frame(order: OrderIssued) -> dict[str, Any]:
    """An order's incident revised by the command room: its priority and flags now, and its
    acknowledge-by (sooner when the incident became more urgent); what its volunteer team is
    told of its escort to a P1 now (`escort`, null: nothing); what its police or security
    team escorts, once it said it (`escorting`, empty: nobody now); a police order's also its
    description (what a follow-up of the report added), which `for_reader` keeps from any
    other reader."""
    frame: dict[str, Any] = {"type": "order_update", "order_id": order.order_id,
                             "priority": order.priority, "flags": list(order.flags),
                             "escort": order.escort}
    if order.ack_by is not None:
        frame["ack_by"] = order.ack_by.isoformat()
    if order.escorting is not None:
        frame["escorting"] = _escorting(order)
    if order.agency_kind == "police" and order.description is not None:
        frame["description"] = order.description
    return frame


def amended(order: OrderIssued, event: OrderAmended) -> OrderIssued:
    """The stored order as `event` revises it: its priority and flags; its acknowledge-by
    only when sooner (a deadline is never pushed back); what it says of its volunteer
    team's escort when the event says anything (`none`: nothing any more); the volunteer
    teams its police or security team escorts when the event says (empty: none now); a police
    order's description when the event carries one (a follow-up's words)."""
    update: dict[str, object] = {"priority": event.priority, "flags": event.flags}
    if (event.ack_by is not None and order.ack_by is not None
            and event.ack_by < order.ack_by):
        update["ack_by"] = event.ack_by
    if event.escort is not None:
        update["escort"] = None if event.escort == "none" else event.escort
    if event.escorting is not None:
        update["escorting"] = event.escorting
    # a follow-up's words: a police order's only (need to know, as for_team)
    if event.description is not None and order.agency_kind == "police":
        update["description"] = event.description
    return order.model_copy(update=update)


def raised(before: OrderIssued, after: OrderIssued, *, answered: bool = False) -> bool:
    """Whether an amendment made the order more urgent: a higher priority, an urgent flag
    (SMS_FLAGS: a knife, someone hurt) it did not have, its volunteer team's escort no
    longer coming (`escort` turned `awaited`: it declined, timed out or was taken back;
    answered or not, a team on its way must hear it), or a sooner acknowledge-by unless
    the team has `answered` it (the deadline was to answer by: its update would only say
    本组已接单, nothing new, and members would learn to ignore updates). A phone that has
    the order only by SMS or Web Push is then sent it again (fallback.py). An escort now
    `sent` is not, alone: the text the phone has says to wait for them at a safe
    distance, still right until they come, and an escort's offer may decline within its
    deadline (one text per offer would teach members to ignore updates); an update sent
    for another reason says it."""
    if int(after.priority[1:]) < int(before.priority[1:]):
        return True
    if any(f in after.flags and f not in before.flags for f in SMS_FLAGS):
        return True
    if after.escort == "awaited" and before.escort != "awaited":
        return True
    return (not answered and after.ack_by is not None and before.ack_by is not None
            and after.ack_by < before.ack_by)


def withdrawn_frame(order_id: str, barred_by: tuple[str, ...] | list[str] = ()
                    ) -> dict[str, Any]:
    """Tells a device its team's order was taken back; `barred_by`: the incident's flags that
    took the team off it (a weapon: the page tells a volunteer why, and to leave)."""
    frame: dict[str, Any] = {"type": "order_withdrawn", "order_id": order_id}
    if barred_by:
        frame["barred_by"] = list(barred_by)
    return frame


# What each order.withdrawn reason means, for notify's log. `reassigned` is dispatch's own
# decision to take the team off (DESIGN: the command room's take-back or reassignment, the
# team moved or removed on the roster or its zone, a weapon flag barring volunteers): nothing
# need have been reassigned, and a take-back read "withdrawn (reassigned)".
WITHDRAWAL_CAUSES = {
    "timeout": "its acknowledge-by deadline passed unanswered",
    "declined": "its team declined it",
    "closed": "its incident was closed",
    "reassigned": "taken back by dispatch (the command room took it back, or the team was "
                  "moved or barred from the incident)",
}


def withdrawal_cause(reason: str) -> str:
    """What took an order back, as the log says it; a reason this notify does not know (a
    newer dispatch's) as it came."""
    return WITHDRAWAL_CAUSES.get(reason, reason)


def left_out_frame(*, count: int, unanswered: int) -> dict[str, Any]:
    """Tells a device how many of its team's live orders the replay left out (its bound,
    store.REPLAY_MOST), and how many of those nobody has answered; 0 once none is."""
    return {"type": "orders_left_out", "count": count, "unanswered": unanswered}


def state_frame(order_id: str, *, state: str, answered: bool, response: str | None,
                member_name: str | None = None) -> dict[str, Any]:
    """Tells every device of the team where an order stands after one of them answered;
    `member_name`: the display name of the member who answered last, when known (only ever
    sent to the team's own sockets: never in a push or an SMS, never a phone number)."""
    frame: dict[str, Any] = {
        "type": "order_state", "order_id": order_id, "state": state, "answered": answered,
    }
    if response is not None:
        frame["response"] = response
    if member_name:
        frame["member_name"] = member_name
    return frame


def push_payload(order: OrderIssued, *, update: int = 0) -> bytes:
    """The Web Push message: enough to alert and open the page, never caller data.

    Push messages cross the browser vendor's push service; the page fetches the full
    order over the WebSocket once it is open. `update`: the order's version when it is sent
    again, raised by an amendment (the page's service worker says it is an update).
    """
    body = _public_order(order)
    if update:
        body["update"] = update
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    if len(data) > PUSH_PAYLOAD_LIMIT:
        body.pop("instructions", None)
        body.pop("address", None)
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return data


def withdrawn_push_payload(order: OrderIssued, barred_by: tuple[str, ...] = ()) -> bytes:
    """The Web Push message that takes an order back: sent with the order's own Topic, it
    replaces the order's push still waiting at the push service for a phone that is offline,
    and the page's service worker puts it in place of the order's notification. What the
    order's push showed (its kind unless an ordinary dispatch, as the withdrawal's SMS: which
    order was taken back), never caller data."""
    body: dict[str, Any] = {"type": "order_withdrawn", "order_id": order.order_id,
                            "category": order.category, "priority": order.priority}
    if barred_by:  # the flags that took the volunteers off it: the worker says to leave
        body["barred_by"] = list(barred_by)
    if order.kind != "dispatch":
        body["kind"] = order.kind
    if order.location.address:
        body["address"] = order.location.address
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    if len(data) > PUSH_PAYLOAD_LIMIT:
        body.pop("address", None)
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return data


# An SMS at most this long: three parts of a Chinese text (a message with any Chinese
# character goes as UCS-2, 70 characters alone or 67 per part of a longer one). A long
# place is shortened to fit; what the member must act on never is.
SMS_MAX_CHARS = 3 * 67


def _units(text: str) -> int:
    """A text's length as a phone counts it: UTF-16 units, two for a character beyond the
    Basic Multilingual Plane (a rare place-name character of CJK Extension B: 𨱏)."""
    return len(text.encode("utf-16-le")) // 2


def _sms(before: str, place: str, after: str) -> str:
    room = SMS_MAX_CHARS - _units(before) - _units(after)
    if _units(place) > room:
        kept, used = [], 1  # the "…"
        for char in place:
            used += _units(char)
            if used > room:
                break
            kept.append(char)
        place = "".join(kept) + "…"
    return before + place + after


def _sms_place(order: OrderIssued) -> str:
    return order.location.address or f"{order.location.lat:.5f},{order.location.lon:.5f}"


# The signature a mainland carrier wants at the start of a text (【签名】), and in English.
SMS_SIGNATURE: dict[Language, str] = {"zh": "【联防】", "en": "[Lianfang] "}


def _what(order: OrderIssued, language: Language, *, flags: bool = False) -> str:
    """The order's priority and category as the member reads them (`P1特急 打架斗殴（持械）`,
    `P1 violence (weapon)`)."""
    category = label("category", order.category, language)
    named = [label("flag", f, language) for f in SMS_FLAGS if flags and f in order.flags]
    if language == "zh":
        said = f"（{'、'.join(named)}）" if named else ""
        return f"{order.priority}{label('priority', order.priority, language)} {category}{said}"
    said = f" ({', '.join(named)})" if named else ""
    return f"{order.priority} {category}{said}"


def sms_withdrawn_text(order: OrderIssued, *, language: Language = DEFAULT_LANGUAGE,
                       barred_by: tuple[str, ...] = ()) -> str:
    """The SMS that takes an order back: an SMS stays in the phone's inbox, read as it came,
    so a member who was texted the order is told not to go (the place, what it was and
    its kind unless an ordinary dispatch, as the order's SMS said: a station member may
    hold a hand-over and a live dispatch at once; never caller data). `barred_by`: the
    incident's flags that took the volunteer team off it (a weapon): the text says so and
    tells one already there to leave."""
    sign = SMS_SIGNATURE[language]
    what = _order_kind(order, language) + _what(order, language)
    if barred_by:
        named = [label("flag", f, language) for f in barred_by]
        if language == "zh":
            return _sms(f"{sign}危险，指令已撤回：{what}（", _sms_place(order),
                        f"）现场报告有人{'、'.join(named)}。请勿前往；已在现场的请立即离开，"
                        f"到安全处等候民警。指令号 {order.order_id}。")
        return _sms(f"{sign}DANGER, WITHDRAWN: {what} at ", _sms_place(order),
                    f": {', '.join(named)} reported there. Do not go; if you are there, leave "
                    f"now for a safe place and wait for the police. Order {order.order_id}.")
    if language == "zh":
        return _sms(f"{sign}指令已撤回，请勿前往：{what}（", _sms_place(order),
                    f"）已不是本组的指令。指令号 {order.order_id}。")
    return _sms(f"{sign}WITHDRAWN, do not go: {what} at ", _sms_place(order),
                f" is no longer your team's. Order {order.order_id}.")


# The flags an SMS names: those that make an order urgent (DESIGN: they raise it to P1).
# Not the others: a calling system's own flags are free text, and an SMS crosses the
# gateway in clear.
SMS_FLAGS = ("weapon", "injury", "in_progress")


# What an SMS sending an order again (raised by an amendment) starts with: it replaces the
# one in the inbox.
SMS_UPDATE: dict[Language, str] = {"zh": "指令更新：", "en": "UPDATED: "}


# What the update of an order the team has acknowledged says in place of the deadline to
# acknowledge by (the state's word in shared/labels.py: 已接单, acknowledged).
SMS_ANSWERED: dict[Language, str] = {"zh": "本组已接单。", "en": " Your team has acknowledged it."}


def _order_kind(order: OrderIssued, language: Language) -> str:
    """The order's kind as the text names it (`（移交）`, `(handover) `): a hand-over to
    file, a follow-up visit, a reinforcement are not an emergency to run to; an ordinary
    dispatch says nothing (as it always read)."""
    if order.kind == "dispatch":
        return ""
    word = label("order_kind", order.kind, language)
    return f"（{word}）" if language == "zh" else f"({word}) "


# What the SMS of a volunteer team's P1 says of the police or security going with it
# (order.issued's `escort`, as the page's card says it, shorter): what the members act on,
# never shortened to fit.
SMS_ESCORT: dict[Language, dict[str, str]] = {
    "zh": {"awaited": "民警/保安尚未出动，请在安全距离外等候。", "sent": "民警/保安已派出。"},
    "en": {"awaited": " Police/security not yet on the way: wait at a safe distance.",
           "sent": " Police/security sent."},
}


def _escort(order: OrderIssued, language: Language) -> str:
    return SMS_ESCORT[language].get(order.escort or "", "")


def _filing_due(order: OrderIssued, tz: tzinfo, language: Language) -> str:
    """A hand-over's filing deadline, with its date (a day away: it crosses midnight), on
    the member's wall clock; '' for an order without one."""
    if order.filing_due is None:
        return ""
    due = order.filing_due.astimezone(tz)
    if language == "zh":
        return f"立案期限{due.month}月{due.day}日{due:%H:%M}。"
    return f" Filing due {due:%Y-%m-%d %H:%M}."


# The member's page, where an order is answered (NOTIFY_PUBLIC_URL's /device), at most this
# long: with everything else an order's text may say, the place still gets some room.
SMS_LINK_MAX_CHARS = 48

# The place keeps at least this much of an SMS (or all of a shorter one): in a text too long
# for the link as well (an English update of a volunteer team's P1 with every flag), the
# link is left out of the text, not the place shortened to nothing.
SMS_PLACE_KEPT = 16

# What the link at the end of an order's SMS says: answer there; the update of an order the
# team has acknowledged asks nobody to, only to look at it.
SMS_LINK: dict[Language, tuple[str, str]] = {"zh": ("在此接单：", "查看："),
                                             "en": (" Answer: ", " View: ")}


def _link(link: str | None, language: Language, answered: bool) -> str:
    return SMS_LINK[language][answered] + link if link else ""


def sms_text(order: OrderIssued, *, tz: tzinfo = UTC,
             language: Language = DEFAULT_LANGUAGE, update: bool = False,
             answered: bool = False, link: str | None = None) -> str:
    """The SMS, in `language` (the deployment's SMS_LANGUAGE): what kind of order it is
    unless an ordinary dispatch (a hand-over, a follow-up visit), what it is (with its
    urgent flags: a knife at the scene), where, and the deadlines on the member's wall
    clock (`tz`, the district's TIMEZONE): to acknowledge by, and a hand-over's to file by,
    with its date; a volunteer team's P1 whether police or security goes with it (`escort`:
    not yet, wait at a safe distance; sent); never caller data. `update`: the order sent again, raised by an
    amendment (`指令更新：`), to a phone texted it before. `answered`: the team has
    acknowledged the order (a teammate, or this member on another phone): the text says so
    (`本组已接单`) in place of the deadline to acknowledge by, which no longer holds. `link`:
    the member's page, last (a phone's link detector takes nothing after it), the same for
    every phone: never a token (the page keeps its own; an SMS crosses the carrier in
    clear); None: no link."""
    sign, what = SMS_SIGNATURE[language], _what(order, language, flags=True)
    if update:
        sign += SMS_UPDATE[language]
    sign += _order_kind(order, language)
    due = (order.ack_by.astimezone(tz).strftime("%H:%M:%S")
           if order.ack_by and not answered else None)
    filing = _filing_due(order, tz, language)
    if language == "zh":
        before = f"{sign}{what}："
        after = ("。" + _escort(order, language) + (f"请于{due}前接单。" if due else "")
                 + (SMS_ANSWERED[language] if answered else "") + filing
                 + f"指令号 {order.order_id}。")
    else:
        before = f"{sign}{what} at "
        after = ("." + _escort(order, language) + (f" Acknowledge by {due}." if due else "")
                 + (SMS_ANSWERED[language] if answered else "") + filing
                 + f" Order {order.order_id}.")
    place = _sms_place(order)
    linked = after + _link(link, language, answered)
    # the link gives way to the place: without where, the page is no use
    room = SMS_MAX_CHARS - _units(before) - _units(linked)
    return _sms(before, place, linked if room >= min(_units(place), SMS_PLACE_KEPT) else after)


def sms_fields(order: OrderIssued, *, tz: tzinfo = UTC,
               language: Language = DEFAULT_LANGUAGE,
               answered: bool = False) -> dict[str, Any]:
    """The parts of an SMS, for a gateway that fills a template of its own with them
    (mainland carriers send only filed templates): what the text says, field by field;
    `order_kind` (dispatch, handover, followup, reinforcement, manual); `ack_by` and
    `filing_due` in the district's time with its offset (None: no such deadline; `ack_by`
    None too once the team has `answered`, as the text gives none then); `escort` (a
    volunteer team's P1: `awaited`, `sent`; None: nothing to say); the text's `language`
    and the category's name in it (a deployment's own category: its id)."""
    return {
        "order_kind": order.kind,
        "priority": order.priority,
        "category": order.category,
        "category_name": label("category", order.category, language),
        "flags": [f for f in SMS_FLAGS if f in order.flags],
        "place": _sms_place(order),
        "ack_by": (order.ack_by.astimezone(tz).replace(microsecond=0).isoformat()
                   if order.ack_by and not answered else None),
        "filing_due": (order.filing_due.astimezone(tz).replace(microsecond=0).isoformat()
                       if order.filing_due else None),
        "escort": order.escort,
        "language": language,
    }
