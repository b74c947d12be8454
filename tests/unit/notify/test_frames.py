"""Device frames: valid ones parse; bad ones give a code, a message and the field, never the input."""

from __future__ import annotations

import json

import pytest

from services.notify.domain.frames import (
    FrameError,
    Ping,
    RateLimiter,
    Received,
    RespondFrame,
    order_id_of,
    parse_frame,
)

MAX = 4096


def test_valid_frames_parse() -> None:
    assert isinstance(parse_frame('{"type":"ping"}', max_bytes=MAX), Ping)
    received = parse_frame('{"type":"received","order_id":"ord_1"}', max_bytes=MAX)
    assert isinstance(received, Received) and received.order_id == "ord_1"
    response = parse_frame(json.dumps({"type": "response", "order_id": "ord_1",
                                       "response": "on_scene", "note": "two people"}),
                           max_bytes=MAX)
    assert isinstance(response, RespondFrame)
    assert (response.response, response.note) == ("on_scene", "two people")
    assert isinstance(parse_frame(b'{"type":"received","order_id":"o"}', max_bytes=MAX), Received)


@pytest.mark.parametrize(("raw", "code", "field"), [
    ("not json", "bad_json", None),
    ("[" * 2000 + "]" * 2000, "bad_json", None),  # nested past the recursion limit
    ("[1, 2]", "bad_frame", None),
    ('{"order_id": "o"}', "unknown_type", "type"),
    ('{"type": "shout"}', "unknown_type", "type"),
    ('{"type": "received"}', "invalid_field", "order_id"),
    ('{"type": "received", "order_id": ""}', "invalid_field", "order_id"),
    ('{"type": "received", "order_id": 5}', "invalid_field", "order_id"),
    ('{"type": "response", "order_id": "o", "response": "maybe"}', "invalid_field", "response"),
    ('{"type": "response", "order_id": "o"}', "invalid_field", "response"),
    ('{"type": "response", "order_id": "o", "response": "declined", "note": "' + "x" * 501 + '"}',
     "invalid_field", "note"),
    ('{"type": "ping", "extra": 1}', "invalid_field", "extra"),
    # not an order id: `<id>:attempts` would name notify's own list of the order's attempts
    ('{"type": "received", "order_id": "ord_1:attempts"}', "invalid_field", "order_id"),
    ('{"type": "response", "order_id": "ord_1:responses", "response": "acknowledged"}',
     "invalid_field", "order_id"),
    ('{"type": "received", "order_id": "ord 1"}', "invalid_field", "order_id"),
    ('{"type": "received", "order_id": "' + "a" * 65 + '"}', "invalid_field", "order_id"),
    ('{"type": "holding", "order_ids": ["ord_1", "ord_1:received"]}', "invalid_field",
     "order_ids.1"),
])
def test_bad_frames_are_described(raw: str, code: str, field: str | None) -> None:
    with pytest.raises(FrameError) as bad:
        parse_frame(raw, max_bytes=MAX)
    assert bad.value.code == code
    assert bad.value.field == field
    frame = bad.value.frame()
    assert frame["type"] == "error" and frame["code"] == code and frame["message"]
    assert ("field" in frame) == (field is not None)


def test_an_error_message_never_echoes_the_frame() -> None:
    secret = "caller 13877001234"
    with pytest.raises(FrameError) as bad:
        parse_frame(json.dumps({"type": "response", "order_id": "o", "response": secret}),
                    max_bytes=MAX)
    assert secret not in json.dumps(bad.value.frame())



@pytest.mark.parametrize("frame", [
    {"type": "response", "order_id": "o", "response": "declined", "13877001234": "Wang Wei"},
    {"type": "response", "order_id": "o", "response": "on_scene",
     "evidence": [{"kind": "photo", "ref": "p1", "Wang Wei 13877001234": "x"}]},
])
def test_an_unknown_key_that_is_no_field_name_is_not_echoed(frame: dict[str, object]) -> None:
    # As the same answer over HTTP (shared.http): a key where a field name goes that is no
    # field name (a caller's number, a name) is the sender's data, said to be there, not named
    with pytest.raises(FrameError) as bad:
        parse_frame(json.dumps(frame), max_bytes=MAX)
    said = json.dumps(bad.value.frame(), ensure_ascii=False)
    assert bad.value.code == "invalid_field"
    assert "13877001234" not in said and "Wang" not in said, said

def test_an_oversized_frame_is_refused_before_parsing() -> None:
    raw = json.dumps({"type": "response", "order_id": "o", "response": "acknowledged",
                      "note": "x" * 400})
    with pytest.raises(FrameError) as bad:
        parse_frame(raw, max_bytes=100)
    assert bad.value.code == "too_large"


def test_the_order_of_a_bad_frame_is_read_when_it_can_be() -> None:
    assert order_id_of('{"type":"response","order_id":"ord_9","response":"x"}') == "ord_9"
    assert order_id_of("nope") is None
    assert order_id_of('{"order_id": 3}') is None
    assert order_id_of("[" * 2000 + "]" * 2000) is None
    assert order_id_of('{"order_id": "ord_9:attempts"}') is None  # not an id: not echoed


def test_an_order_id_is_dispatchs_alphabet() -> None:
    from shared.events import new_id

    for order_id in (new_id("ord"), "ord_1", "o", "A-b_9", "x" * 64):
        frame = parse_frame(json.dumps({"type": "received", "order_id": order_id}),
                            max_bytes=MAX)
        assert isinstance(frame, Received) and frame.order_id == order_id


def test_the_rate_limiter_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3, now=0.0)
    assert [limiter.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow(0.5)            # one token back after half a second at 2/s
    assert not limiter.allow(0.5)
    assert all(limiter.allow(10.0) for _ in range(3))  # refilled, capped at the burst
    assert not limiter.allow(10.0)


def test_an_answer_carries_evidence_references_and_a_bad_one_names_its_field() -> None:
    from services.notify.config import Settings

    records = [{"kind": "video", "ref": f"bwc-0417-{n:04d}.mp4" + "x" * 170} for n in range(10)]
    raw = json.dumps({"type": "response", "order_id": "ord_1", "response": "resolved",
                      "note": "调解成功" * 125, "evidence": records}, ensure_ascii=False)
    frame = parse_frame(raw, max_bytes=Settings.model_fields["max_frame_bytes"].default)
    assert isinstance(frame, RespondFrame) and frame.evidence is not None  # the largest fits
    assert [e.kind for e in frame.evidence] == ["video"] * 10
    for evidence, field in (([{"kind": "hologram", "ref": "x"}], "evidence.0.kind"),
                            ([{"kind": "photo", "ref": " "}], "evidence.0.ref"),
                            ([{"kind": "photo", "ref": "x"}] * 11, "evidence")):
        with pytest.raises(FrameError) as failed:
            parse_frame(json.dumps({"type": "response", "order_id": "ord_1",
                                    "response": "resolved", "evidence": evidence}), max_bytes=MAX)
        assert (failed.value.code, failed.value.field) == ("invalid_field", field)
    with pytest.raises(FrameError) as failed:
        parse_frame(json.dumps({"type": "response", "order_id": "ord_1", "response": "resolved",
                                "evidence": {"kind": "photo", "ref": "x"}}), max_bytes=MAX)
    assert failed.value.message == "evidence must be a list"
