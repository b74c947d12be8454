"""When an order no device confirmed goes out on its next fallback channel: every step sent,
and time left to answer after the last, before the order's acknowledge-by deadline; and
whose receipt means the team has the order."""

from __future__ import annotations

from collections.abc import Collection


def team_has_order(*, confirmed_by: Collection[str], on_shift: Collection[str] | None) -> bool:
    """Whether the team has the order, so that no further fallback step goes.

    `confirmed_by`: the members whose devices confirmed receipt; `on_shift`: the members on
    the team's shift, as volunteers says. A member off shift (at home, the page open) having
    the order is not the team having it: its members on shift, their phones offline, still
    need their Web Push and SMS before the deadline. Any receipt counts when nobody is on the
    shift (a team the command room called in off duty) and when volunteers could not say
    (`on_shift` None): then as before notify knew shifts, rather than wait for volunteers.
    """
    if not confirmed_by:
        return False
    if not on_shift:
        return True
    return not set(on_shift).isdisjoint(confirmed_by)


def wait_before_step(*, now: float, ack_by: float | None, after_s: float, steps_left: int,
                     reached: bool = True) -> float:
    """Seconds from `now` until the next fallback step is due.

    `steps_left`: the steps still to send, the next one included; `after_s`:
    FALLBACK_AFTER_S, the longest wait. Without a deadline (`ack_by` None: a hand-over),
    each step waits `after_s`. With one, the steps still to send and the member's own answer
    after the last share what is left before it equally, each wait at most `after_s`: with
    Web Push and SMS, a P1 order (30 s) goes by Web Push at 10 s and by SMS at 20 s, a P4
    (300 s) at 30 s and 60 s. A deadline already past: at once, where the step finds
    itself `too_late` and sends nothing. `reached`: whether the step just tried reached
    anybody; one that found nobody to send to, or whose every message failed, is
    followed by the next step at once.
    """
    if not reached:
        return 0.0
    if ack_by is None:
        return max(0.0, after_s)
    left = max(0.0, ack_by - now)
    return max(0.0, min(after_s, left / (max(steps_left, 1) + 1)))


def too_late(*, now: float, ack_by: float | None) -> bool:
    """Whether a fallback message for an order with this acknowledge-by deadline would come
    too late: at or after it, dispatch withdraws the order and offers the incident to the
    next team, so the message would send a team to an incident no longer theirs. The
    withdrawal may reach notify after the order (its entry waiting in its own stream while
    notify was away), so the deadline itself says it, not the withdrawal."""
    return ack_by is not None and now >= ack_by


# How often one message of the chain's last step is tried at most (the first try
# included): waits of 1, 2, 4, 8, 16, then 30 s (FALLBACK_AFTER_S as shipped) cover a
# gateway down for three and a half minutes; an order's deadline mostly ends them sooner.
MAX_TRIES = 12


def retry_wait(*, now: float, ack_by: float | None, tries: int, after_s: float,
               retry_after_s: float | None = None, max_tries: int = MAX_TRIES) -> float | None:
    """Seconds until a message that failed for a passing reason (the service down or
    throttling, no answer in time) is tried again; None: not again.

    `tries`: how often it was tried so far. Waits 1, 2, 4 ... s, never longer than
    `after_s` (FALLBACK_AFTER_S), but at least what the service asked for (`retry_after_s`,
    its Retry-After). Not again after `max_tries`, nor when the try would come at or after
    the order's `ack_by` (dispatch withdraws the order then)."""
    if tries >= max_tries:
        return None
    wait = min(max(after_s, 0.0), 2.0 ** max(tries - 1, 0))
    if retry_after_s is not None:
        wait = max(wait, retry_after_s)
    if ack_by is not None and now + wait >= ack_by:
        return None
    return wait
