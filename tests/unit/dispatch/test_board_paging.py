"""The board's cursor (`next`, given back as `after`): it names an incident's place exactly,
time and id, and anything else is refused as not a cursor (a 422 naming `after`)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dispatch.paging import (
    MAX_CURSOR,
    MAX_ID,
    Position,
    decode_cursor,
    decode_letter_cursor,
    encode_cursor,
    encode_letter_cursor,
)

SCORES = st.floats(allow_nan=False)  # a time in seconds; -inf is a broken record's place
IDS = st.text(min_size=1, max_size=MAX_ID)


@given(SCORES, IDS)
def test_a_cursor_gives_back_the_place_it_was_made_of_exactly(score: float, incident_id: str
                                                              ) -> None:
    cursor = encode_cursor(Position(score, incident_id))
    assert decode_cursor(cursor) == Position(score, incident_id)
    assert len(cursor) <= MAX_CURSOR
    assert all(c.isalnum() or c in "-_" for c in cursor)  # as it is in a query string


@given(SCORES, IDS)
def test_a_cursor_of_the_order_received_is_no_place_in_the_order_reported(
        score: float, incident_id: str) -> None:
    """`?order=received` pages by when dispatch received each report: its cursor names
    that order, and each order refuses the other's (the same time means another place)."""
    received = encode_cursor(Position(score, incident_id), "received")
    assert decode_cursor(received, "received") == Position(score, incident_id)
    assert len(received) <= MAX_CURSOR
    with pytest.raises(ValueError):
        decode_cursor(received)
    with pytest.raises(ValueError):
        decode_cursor(encode_cursor(Position(score, incident_id)), "received")


def test_a_time_to_the_microsecond_survives_the_cursor() -> None:
    score = 1_733_400_000.123456  # no rounding: a tie at that instant is told by the id
    assert decode_cursor(encode_cursor(Position(score, "inc_a"))).score == score
    # a record whose time cannot be read is listed last (-inf): it is paged past too
    assert decode_cursor(encode_cursor(Position(float("-inf"), "inc_a"))).score == float("-inf")


@given(st.text(max_size=MAX_CURSOR + 10))
def test_any_other_text_is_refused_as_not_a_cursor_and_nothing_else(text: str) -> None:
    try:
        position = decode_cursor(text)
    except ValueError:
        return
    assert decode_cursor(encode_cursor(position)) == position  # only what names a place


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("raw", [
    '[NaN, "inc"]', '[null, "inc"]', '[true, "inc"]', '["1.5", "inc"]', '[1.5, ""]',
    '[1.5, 7]', '[1.5]', '[1.5, "inc", 3]', '{"score": 1.5}', f'[{10 ** 400}, "inc"]',
    json.dumps([1.5, "i" * (MAX_ID + 1)]), "[" * 5000, "not json",
    '[1.5, "inc", "reported"]', '[1.5, "inc", "received", "received"]', '["received"]',
    '[null, "inc", "received"]', '7',
])
def test_what_names_no_place_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(_b64(raw))
    with pytest.raises(ValueError):
        decode_cursor(_b64(raw), "received")


@pytest.mark.parametrize("text", ["", "é", "x" * (MAX_CURSOR + 1), "%%%", "a"])
def test_a_cursor_that_is_no_base64_of_a_place_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(text)


@given(st.lists(st.tuples(st.sampled_from([1.0, 2.0, 2.5]), IDS), min_size=2, max_size=20))
def test_the_board_s_order_is_redis_s_newest_first_the_greater_id_first(
        places: list[tuple[float, str]]) -> None:
    """ZREVRANGEBYSCORE: by score, then by the member's bytes (UTF-8), both descending."""
    board = sorted((Position(*p) for p in set(places)), reverse=True)
    redis = sorted(set(places), key=lambda p: (p[0], p[1].encode()), reverse=True)
    assert [(p.score, p.incident_id) for p in board] == redis
    for earlier, later in zip(board, board[1:], strict=False):
        assert later.comes_after(earlier) and not earlier.comes_after(later)


# --- the reports not handled: a dead letter's id -------------------------------------------

LETTER_IDS = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)).map(
    lambda parts: f"{parts[0]}-{parts[1]}")


@given(LETTER_IDS)
def test_a_dead_letter_cursor_gives_back_its_letter_id(letter_id: str) -> None:
    cursor = encode_letter_cursor(letter_id)
    assert decode_letter_cursor(cursor) == letter_id
    assert all(c.isalnum() or c in "-_" for c in cursor)


@given(st.text(max_size=MAX_CURSOR + 10))
def test_any_other_text_is_no_dead_letter_cursor(text: str) -> None:
    try:
        letter_id = decode_letter_cursor(text)
    except ValueError:
        return
    assert decode_letter_cursor(encode_letter_cursor(letter_id)) == letter_id


@pytest.mark.parametrize("raw", [
    "dl:18446744073709551616-0", "dl:0-18446744073709551616", "dl:1-", "dl:-1", "dl:1",
    "dl:1-2\n", "dl:١-2", "1-2", "dl:", "dl:1-2-3",
])
def test_what_names_no_dead_letter_is_refused(raw: str) -> None:
    # Redis refuses an id past 2**64 - 1 or of other digits: a 500, were it passed on
    with pytest.raises(ValueError):
        decode_letter_cursor(_b64(raw))


def test_the_board_s_cursor_is_no_dead_letter_cursor_nor_the_reverse() -> None:
    with pytest.raises(ValueError):
        decode_letter_cursor(encode_cursor(Position(1.5, "inc_a")))
    with pytest.raises(ValueError):
        decode_cursor(encode_letter_cursor("1-0"))
