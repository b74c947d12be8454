"""The dead-letter list's merge of several streams and the replay's age rule, without Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from faststream.redis.parser.binary import BinaryMessageFormatV1

from services.dispatch.store import SEEN_TTL_S, SENT_ON_TTL_S
from services.notify.config import Settings as NotifySettings
from services.volunteers.store.teams import ORDER_TTL_S as VOLUNTEERS_ORDER_TTL_S
from shared.dead_letters import REPLAY_SAFE_S, first_seen_ms, merge_newest_first, page_end
from shared.events import OrderWithdrawn


def letters(stream: str, *ids: str) -> list[dict[str, Any]]:
    """A stream's page as XREVRANGE gives it: newest first."""
    return [{"stream": stream, "dead_letter_id": i} for i in sorted(
        ids, key=lambda i: tuple(int(p) for p in i.split("-")), reverse=True)]


def shown(rows: list[Any]) -> list[tuple[str, str]]:
    return [(r["stream"], r["dead_letter_id"]) for r in rows]


def test_one_stream_s_many_dead_letters_never_hide_another_s_newer_one() -> None:
    noisy = letters("device.revoked", *(f"{n}-0" for n in range(10, 16)))  # limit + 1 of them
    rows, more = merge_newest_first([letters("order.issued", "12-5"), noisy], limit=5)
    assert shown(rows) == [("device.revoked", "15-0"), ("device.revoked", "14-0"),
                           ("device.revoked", "13-0"), ("order.issued", "12-5"),
                           ("device.revoked", "12-0")]
    assert more


def test_ids_are_compared_as_numbers_not_as_text() -> None:
    rows, more = merge_newest_first(
        [letters("a", "9-0", "10-0"), letters("b", "100-0", "9-1")], limit=10)
    assert shown(rows) == [("b", "100-0"), ("a", "10-0"), ("b", "9-1"), ("a", "9-0")]
    assert not more


def test_nothing_more_once_every_stream_gave_fewer_than_asked() -> None:
    rows, more = merge_newest_first([letters("a", "3-0", "1-0"), letters("b", "2-0"), []],
                                    limit=3)
    assert shown(rows) == [("a", "3-0"), ("b", "2-0"), ("a", "1-0")] and not more
    assert merge_newest_first([], limit=3) == ([], False)


def test_a_page_never_ends_between_two_streams_letters_of_the_same_id() -> None:
    # The next page starts strictly before the last id shown: a letter of that id left
    # behind would never be listed. The page ends before the tie instead.
    pages = [letters("a", "7-0", "5-0", "4-0"), letters("b", "5-0", "3-0")]
    rows, more = merge_newest_first(pages, limit=2)
    assert shown(rows) == [("a", "7-0")] and more
    rows, more = merge_newest_first([letters("a", "5-0", "4-0"), letters("b", "5-0", "3-0")],
                                    limit=2)
    assert shown(rows) == [("b", "5-0"), ("a", "5-0")] and more  # the tie just fits
    # a page that is all one tie takes all of it
    rows, more = merge_newest_first([letters("a", "5-0", "4-0"), letters("b", "5-0", "3-0"),
                                     letters("c", "5-0")], limit=2)
    assert shown(rows) == [("c", "5-0"), ("b", "5-0"), ("a", "5-0")] and more


def test_a_page_ends_just_before_its_cursor_and_nothing_comes_before_0_0() -> None:
    assert page_end(None) == "+"
    assert page_end("17-3") == "(17-3"
    assert page_end("0-0") is None and page_end("000-0") is None


def envelope(body: bytes) -> bytes:
    return asyncio.run(BinaryMessageFormatV1.encode(
        message=body, reply_to=None, correlation_id="c", headers={}))


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def test_a_dead_letter_s_event_is_as_old_as_the_earliest_thing_it_tells() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    event = OrderWithdrawn(district="d1", order_id="o1", incident_id="i1", team_id="t1",
                           reason="timeout", occurred_at=now - timedelta(days=9))
    letter_id = f"{ms(now)}-0"
    # replayed once already: its entry is 2 days old, its event 9
    fields = {b"entry_id": f"{ms(now - timedelta(days=2))}-4".encode(),
              b"payload": envelope(event.model_dump_json().encode())}
    assert first_seen_ms(letter_id, fields) == ms(now - timedelta(days=9))
    # poison: only the entry's time reads
    fields = {b"entry_id": f"{ms(now - timedelta(days=2))}-0".encode(),
              b"payload": b'{"garbage": "\\u0000"}'}
    assert first_seen_ms(letter_id, fields) == ms(now - timedelta(days=2))
    for payload in (b"\xff\xfe", b"[1, 2]", envelope(b'{"occurred_at": "yesterday"}'),
                    envelope(b'{"occurred_at": "2026-11-01T00:00:00"}')):  # no offset: unread
        assert first_seen_ms(letter_id, {b"payload": payload}) == ms(now)
    assert first_seen_ms(letter_id.encode(), {}) == ms(now)


def test_a_replay_is_safe_for_no_longer_than_the_shortest_memory_of_a_consumer() -> None:
    # What each consumer remembers of the events it handled (shared.dead_letters names them).
    notify = NotifySettings.model_fields["order_ttl_s"].default
    intake_seen_s = 30 * 86_400  # services/intake/store.py _PROJECT: EXPIRE ... 2592000
    assert REPLAY_SAFE_S <= min(SEEN_TTL_S, notify, VOLUNTEERS_ORDER_TTL_S, intake_seen_s)
    assert REPLAY_SAFE_S == SEEN_TTL_S  # and no shorter than it need be
    # a lost incident replayed then still finds the report sent out in its place
    assert SENT_ON_TTL_S >= REPLAY_SAFE_S


def test_volunteers_keeps_an_order_s_record_as_long_as_notify_takes_answers_to_it() -> None:
    # An answer notify takes (an open order: ORDER_OPEN_TTL_S from its last answer) must find
    # volunteers' record of the order: made again without its kind, it holds its team busy.
    open_ttl = NotifySettings.model_fields["order_open_ttl_s"].default
    assert VOLUNTEERS_ORDER_TTL_S > open_ttl
