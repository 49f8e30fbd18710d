"""A worker's heartbeat: how other processes know which workers live and what they serve.

Design note: each worker scores its name in the flow's worker set by when its heartbeat
expires, on the Redis server's clock (``_scripts.PRESENCE``), and keeps its description in a
hash beside it. A reader compares the scores with the server's ``TIME``: hosts' clocks never
enter. A worker beats every ``min_idle_s / 4`` with a ttl of ``min_idle_s``, so it is seen as
dead exactly when its entries may be taken over. One that stops gracefully leaves the set; one
that dies stays listed, not alive, until a live worker forgets it an hour later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any, Final, final

from ._scripts import PRESENCE

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._keys import Keys
    from ._tally import Link

__all__ = ["FORGET_AFTER_MS", "Presence", "describe"]

FORGET_AFTER_MS: Final = 3_600_000
"""How long a dead worker stays listed."""


def describe(host: str, pid: int, concurrency: Mapping[str, int], ttl_ms: int) -> str:
    """The JSON a worker's heartbeat keeps in the worker-info hash."""
    return json.dumps(
        {"host": host, "pid": pid, "concurrency": dict(concurrency), "ttl_ms": ttl_ms},
        separators=(",", ":"),
    )


@final
class Presence:
    """Sends one worker's heartbeats; owned by the worker's ``run``."""

    __slots__ = ("beat_at", "client", "errors", "info", "keys", "link", "name", "script", "ttl_ms")

    def __init__(
        self,
        client: Any,
        keys: Keys,
        name: str,
        info: str,
        *,
        ttl_ms: int,
        link: Link,
        errors: tuple[type[BaseException], ...],
    ) -> None:
        self.client = client
        self.script = client.register_script(PRESENCE)
        self.keys = keys
        self.name = name
        self.info = info
        self.ttl_ms = ttl_ms
        self.link = link
        self.errors = errors
        self.beat_at: float | None = None
        """When the last heartbeat was written (epoch seconds, this host's clock)."""

    async def beat(self) -> None:
        """Write one heartbeat.

        Raises:
            redis.ConnectionError: the server went away.
        """
        keys = self.keys
        await self.script(
            keys=[keys.workers, keys.worker_info],
            args=[self.name, self.info, self.ttl_ms, FORGET_AFTER_MS],
        )
        self.beat_at = time.time()

    async def run(self) -> None:
        """Beat every quarter of the ttl until cancelled; connection errors are reported."""
        period = self.ttl_ms / 4000
        while True:
            await asyncio.sleep(period)
            try:
                await self.beat()
            except self.errors as exc:
                self.link.lost(exc)
            else:
                self.link.up()

    async def leave(self) -> None:
        """Leave the worker set (a graceful stop); best effort if Redis is away."""
        with contextlib.suppress(*self.errors):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zrem(self.keys.workers, self.name)
                pipe.hdel(self.keys.worker_info, self.name)
                await pipe.execute()
