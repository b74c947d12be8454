"""How a team's responses move an order: forward only, `declined` only before `acknowledged`,
`reinforce` on an order not yet acknowledged acknowledges it, no `handover` of the station's
own hand-over. `allowed_responses` and `decide_response` are one rule: what an order lists as
allowed is what it takes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.events import Response

OrderState = Literal[
    "issued", "acknowledged", "en_route", "on_scene", "resolved", "handover", "declined",
    "withdrawn",
]

_RANK: dict[str, int] = {
    "issued": 0, "acknowledged": 1, "en_route": 2, "on_scene": 3, "resolved": 4, "handover": 4,
}
FORWARD: tuple[Response, ...] = ("acknowledged", "en_route", "on_scene", "resolved", "handover")
FINISHED: frozenset[str] = frozenset({"resolved", "handover", "declined"})


@dataclass(frozen=True, slots=True)
class Decision:
    state: OrderState
    emit: bool  # False: a repeat of what was already recorded; answer 200 and publish nothing


class ResponseRefused(Exception):
    """The order's state forbids this response (HTTP 409)."""

    def __init__(self, message: str, *, state: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.message = message
        self.state = state
        self.allowed = allowed


OWN_HANDOVER = ("this order is the station's own hand-over: there is nobody to hand it to; "
                "answer resolved once the case is filed")


def allowed_responses(state: str, *, kind: str = "dispatch") -> tuple[str, ...]:
    """The responses that move an order of `kind` in `state` (a repeat of the one that set
    the state is answered too, changing nothing, and is not listed)."""
    if state in FINISHED or state == "withdrawn":
        return ()
    rank = _RANK[state]
    allowed = [r for r in FORWARD if _RANK[r] > rank
               and not (kind == "handover" and r == "handover")]
    if state == "issued":
        allowed.append("declined")
    allowed.append("reinforce")
    return tuple(allowed)


def is_live(state: str) -> bool:
    return state not in FINISHED and state != "withdrawn"


def is_ahead(state: str, *, of: str) -> bool:
    """Whether an order in `state` has moved on from `of` (states only move forward; an
    older state read after a newer one was told is not ahead of it)."""
    if state == of or not is_live(of):
        return False
    if not is_live(state):
        return True
    return _RANK.get(state, 0) > _RANK.get(of, 0)


def decide_response(
    *,
    state: str,
    response: Response,
    last_reinforce_at: datetime | None,
    now: datetime,
    reinforce_repeat_s: float,
    kind: str = "dispatch",
) -> Decision:
    """The order's next state, or ResponseRefused saying which state it is in and what is allowed."""
    if state == "withdrawn":
        raise ResponseRefused(
            "the order was withdrawn; it takes no responses", state=state, allowed=()
        )
    if response == state:
        return Decision(state=_as_state(state), emit=False)  # a retry of the response that set this state
    if state in FINISHED:
        raise ResponseRefused(
            f"the order is finished ({state}); it takes no more responses",
            state=state, allowed=(),
        )
    allowed = allowed_responses(state, kind=kind)
    if response == "handover" and kind == "handover":
        raise ResponseRefused(OWN_HANDOVER, state=state, allowed=allowed)
    if response == "reinforce":
        repeat = (
            last_reinforce_at is not None
            and (now - last_reinforce_at).total_seconds() < reinforce_repeat_s
        )
        if state == "issued" and not repeat:
            # A team that asks for help on an order it has not acknowledged (it saw "fight
            # in progress" and pressed "need backup" first) has taken it: dispatch reads the
            # same answer as its acknowledgement (no deadline, no decline after it).
            return Decision(state="acknowledged", emit=True)
        return Decision(state=_as_state(state), emit=not repeat)
    if response == "declined":
        if state != "issued":
            raise ResponseRefused(
                f"the order is {state}; declined is allowed only before acknowledged; "
                f"allowed now: {', '.join(allowed)}",
                state=state, allowed=allowed,
            )
        return Decision(state="declined", emit=True)
    if _RANK[response] <= _RANK[state]:
        raise ResponseRefused(
            f"the order is {state}; responses move forward only; allowed now: {', '.join(allowed)}",
            state=state, allowed=allowed,
        )
    return Decision(state=_as_state(response), emit=True)


def _as_state(value: str) -> OrderState:
    if value not in _RANK and value not in ("declined", "withdrawn"):
        raise ValueError(value)
    return value  # type: ignore[return-value]
