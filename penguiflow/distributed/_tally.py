"""What a worker process counts as it goes: its link to Redis, and entries per node.

Both are plain counters and flags, updated inline by the loops that see the facts (a read, a
commit, a connection error) and read by ``Worker.health()``: nothing is built per entry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Link", "NodeTally"]


@dataclass(slots=True)
class NodeTally:
    """Entries of one node handled by this process, since it started."""

    consumed: int = 0
    """Entries read from the node's streams (new deliveries)."""
    acked: int = 0
    """Entries committed: outputs published and the input acknowledged (cancelled ones too)."""
    fenced: int = 0
    """Commits refused because another worker had taken the entry over meanwhile."""
    failed: int = 0
    """Entries left unfinished by a fault outside the node (taken over later)."""
    dead_lettered: int = 0
    """Entries moved to the node's dead-letter stream."""
    taken_over: int = 0
    """Entries taken over from a worker presumed dead (idle past ``min_idle_s``)."""

    def settled(self, code: int) -> None:
        """Count a commit's answer (see ``_scripts.COMMIT_MANY``): fenced, or acked."""
        if code == -1:
            self.fenced += 1
        else:
            self.acked += 1


@final
class Link:
    """The state of a worker's connection to Redis, as its loops last saw it.

    Every loop reports its failures (``lost``) and its successes (``up``); the connection is
    up when the last report was a success. Error texts are scrubbed of the URL's password.
    """

    __slots__ = (
        "connected",
        "down_since",
        "last_error",
        "last_error_at",
        "reconnects",
        "scrub",
    )

    def __init__(self, scrub: Callable[[str], str]) -> None:
        self.scrub = scrub
        self.connected = True
        """False from a failed command until the next one that succeeds."""
        self.down_since: float | None = None
        """When the connection was lost (epoch seconds), while it is down."""
        self.last_error: str | None = None
        """The last connection error's type and text, password hidden."""
        self.last_error_at: float | None = None
        """When that error happened (epoch seconds)."""
        self.reconnects = 0
        """Times the connection came back after being lost."""

    def lost(self, exc: BaseException) -> None:
        """Record a connection error."""
        now = time.time()
        if self.connected:
            self.connected = False
            self.down_since = now
        self.last_error = self.scrub(f"{type(exc).__name__}: {exc}")
        self.last_error_at = now

    def up(self) -> None:
        """Record a command that succeeded."""
        if not self.connected:
            self.connected = True
            self.down_since = None
            self.reconnects += 1
