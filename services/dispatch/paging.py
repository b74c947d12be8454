"""The board's order and paging: incidents newest first by the time reported, or by the
time dispatch received them (`?order=received`) (the same instant: the greater id first,
as Redis orders equal scores), read from the indexes in batches, and the cursor (`next`,
given back as `after`) that resumes exactly there; and the cursor of the reports not
handled (dead letters, newest first by their id)."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from . import store

# A key's read while several are merged (a dispatcher's districts): no fewer than this.
MIN_READ = 50
MAX_ID = 256  # characters of an incident id a cursor may name (intake's are ~26)
MAX_CURSOR = 1500  # characters of an `after` value: MAX_ID of 4-byte characters fit
# The board's orders: by the time reported (the API's default, the KPIs' and the periods'),
# or by the time dispatch received the report (store.RECEIVED: the console's).
Order = Literal["reported", "received"]


@dataclass(frozen=True, order=True)
class Position:
    """Where an incident stands on the board: its score in the indexes (the time reported,
    or received in the order received, seconds since 1970) and its id. Greater is newer,
    listed first."""

    score: float
    incident_id: str

    def comes_after(self, other: Position) -> bool:
        """Whether this incident is listed after `other`: older, or reported at the same
        instant with a smaller id (str order is the byte order of UTF-8, Redis's own)."""
        return self < other


def encode_cursor(position: Position, order: Order = "reported") -> str:
    """An opaque cursor for `position` in the board's `order` (URL-safe, no padding)."""
    # the order received names itself: its scores are no place in the order reported
    named: list[object] = [position.score, position.incident_id]
    if order != "reported":
        named.append(order)
    raw = json.dumps(named, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str, order: Order = "reported") -> Position:
    """The position a cursor of encode_cursor in `order` names; ValueError for anything
    else (a cursor of the other order among them)."""
    if not 0 < len(text) <= MAX_CURSOR:
        raise ValueError("not a cursor of the board")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        named = json.loads(raw)
        if not isinstance(named, list) or named[2:] != ([] if order == "reported" else [order]):
            raise ValueError("not a cursor of the board in this order")
        score, incident_id = named[:2]
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise TypeError("a cursor's time is a number")
        score = float(score)
    except (binascii.Error, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ValueError("not a cursor of the board") from exc
    # -inf is a broken record's place (ordered last), never NaN: it orders nothing
    if math.isnan(score) or not isinstance(incident_id, str) or not 0 < len(incident_id) <= MAX_ID:
        raise ValueError("not a cursor of the board")
    return Position(score, incident_id)


# A dead letter's id as a cursor names it: `<ms>-<seq>`, each an unsigned 64-bit number
# (what Redis refuses would be a 500, not a 422).
_LETTER_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
_LETTER_CURSOR = "dl:"


def encode_letter_cursor(letter_id: str) -> str:
    """An opaque cursor for the dead letter `letter_id` of the reports not handled (the list
    goes on with the letters older than it), URL-safe, no padding."""
    return base64.urlsafe_b64encode((_LETTER_CURSOR + letter_id).encode()).decode().rstrip("=")


def decode_letter_cursor(text: str) -> str:
    """The dead-letter id a cursor of encode_letter_cursor names; ValueError for anything
    else (the board's cursors among them)."""
    try:
        if not 0 < len(text) <= MAX_CURSOR:
            raise ValueError("too short or too long")
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError among them
        raise ValueError("not a cursor of the reports not handled") from exc
    letter_id = raw.removeprefix(_LETTER_CURSOR)
    if (raw == letter_id or not _LETTER_ID.fullmatch(letter_id)
            or any(int(part) > 2**64 - 1 for part in letter_id.split("-"))):
        raise ValueError("not a cursor of the reports not handled")
    return letter_id


class IndexScan:
    """The incidents of one or more indexes (sorted sets scored by the time reported, or
    received: all districts', or one district's each) in [since_ts, until_ts) and after `after`,
    newest first, merged, a batch at a time; each index is read `batch` (or, merging,
    a share of it) at a time from where it was left, never from its top again."""

    def __init__(self, redis: Redis, keys: Sequence[str], *, since_ts: float, until_ts: float,
                 after: Position | None, batch: int) -> None:
        self._redis = redis
        self._keys = list(dict.fromkeys(keys))
        self._since, self._until, self._batch = since_ts, until_ts, batch
        self._per_key = batch if len(self._keys) == 1 else max(
            MIN_READ, batch // max(len(self._keys), 1))
        self._buffers: dict[str, deque[Position]] = {key: deque() for key in self._keys}
        self._last: dict[str, Position | None] = dict.fromkeys(self._keys, after)
        self._open = set(self._keys)  # not yet read to the end

    async def next_batch(self) -> list[Position]:
        """Up to `batch` positions, the newest first; [] once every index is read."""
        out: list[Position] = []
        while len(out) < self._batch:
            empty = [key for key in self._keys if key in self._open and not self._buffers[key]]
            if empty:
                await self._read(empty)
            heads = sorted((key for key in self._keys if self._buffers[key]),
                           key=lambda key: self._buffers[key][0], reverse=True)
            if not heads:
                break
            # every index still open has a head here: the greatest is the next on the board,
            # and so are those of its index that are greater than any other's head
            newest = self._buffers[heads[0]]
            runner_up = self._buffers[heads[1]][0] if len(heads) > 1 else None
            while newest and len(out) < self._batch and (
                    runner_up is None or newest[0] > runner_up):
                out.append(newest.popleft())
        return out

    async def _read(self, keys: list[str]) -> None:
        def after(key: str) -> tuple[float, str] | None:
            last = self._last[key]
            return (last.score, last.incident_id) if last else None

        pages = await store.index_pages(self._redis, [(key, after(key)) for key in keys],
                                        since_ts=self._since, until_ts=self._until,
                                        count=self._per_key)
        for key, (page, ended) in zip(keys, pages, strict=True):
            self._buffers[key].extend(Position(score, incident_id) for incident_id, score in page)
            if page:
                self._last[key] = self._buffers[key][-1]
            if ended:
                self._open.discard(key)
