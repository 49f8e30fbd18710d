"""One node's circuit breaker: closed, open, half-open (see ``BreakerPolicy``).

The node's workers share it. Outcomes are per message (after retries). ``admit`` hands out a
ticket naming the breaker's generation; an outcome whose ticket is from an older generation
(a call admitted before the last transition, finishing late) is ignored, so a slow call
from before an opening cannot close the breaker, nor count as a half-open trial.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .._events import CIRCUIT_CLOSED, CIRCUIT_HALF_OPEN, CIRCUIT_OPEN

if TYPE_CHECKING:
    from ..health import BreakerState
    from ..node import BreakerPolicy

__all__ = ["Breaker"]


class Breaker:
    """The state machine; the caller passes the clock reading (``loop.time()``)."""

    __slots__ = (
        "consecutive",
        "generation",
        "opened_at",
        "policy",
        "recent",
        "state",
        "trial_successes",
        "trials",
    )

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state: BreakerState = "closed"
        self.generation = 0
        self.consecutive = 0
        self.recent: deque[bool] = deque(maxlen=policy.window)
        self.opened_at = 0.0
        self.trials = 0
        self.trial_successes = 0

    def retry_after(self, now: float) -> float:
        """Seconds until an open breaker lets trial calls through (0 when not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self.opened_at + self.policy.cooldown_s - now)

    def admit(self, now: float) -> tuple[int | None, str | None]:
        """Decide whether a message may call the node.

        Returns:
            (ticket, transition): the ticket (None if rejected) and the event to emit for a
            transition this decision made (open -> half-open), or None.
        """
        transition = None
        if self.state == "open":
            if now < self.opened_at + self.policy.cooldown_s:
                return None, None
            self._move("half_open")
            self.trials = self.trial_successes = 0
            transition = CIRCUIT_HALF_OPEN
        if self.state == "half_open":
            if self.trials >= self.policy.half_open_calls:
                return None, transition
            self.trials += 1
        return self.generation, transition

    def release(self, ticket: int) -> None:
        """Forget an admitted call that ended without an outcome (its trace was cancelled).

        A half-open breaker gets the trial place back, so that another call can try.
        """
        if ticket == self.generation and self.state == "half_open" and self.trials > 0:
            self.trials -= 1

    def record(self, ticket: int, ok: bool, now: float) -> str | None:
        """Record a message's outcome; return the transition event it caused, if any."""
        if ticket != self.generation:
            return None  # admitted before the last transition: stale
        if self.state == "half_open":
            if not ok:
                return self._open(now)
            self.trial_successes += 1
            if self.trial_successes >= self.policy.half_open_calls:
                self._move("closed")
                self.consecutive = 0
                self.recent.clear()
                return CIRCUIT_CLOSED
            return None
        if self.state != "closed":
            return None
        self.recent.append(ok)
        self.consecutive = 0 if ok else self.consecutive + 1
        if self.consecutive >= self.policy.failures or self._ratio_exceeded():
            return self._open(now)
        return None

    def _ratio_exceeded(self) -> bool:
        ratio = self.policy.failure_ratio
        recent = self.recent
        if ratio is None or len(recent) < self.policy.window:
            return False
        return recent.count(False) / len(recent) >= ratio

    def _open(self, now: float) -> str:
        self._move("open")
        self.opened_at = now
        return CIRCUIT_OPEN

    def _move(self, state: BreakerState) -> None:
        self.state = state
        self.generation += 1
