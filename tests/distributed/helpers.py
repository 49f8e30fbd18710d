"""Helpers of the distributed tests: flows served in this process, and waiting on conditions."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from penguiflow import Headers, Message
from penguiflow.distributed import RedisBackend, RemoteFlow, serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from penguiflow.core import PenguiFlow
    from penguiflow.registry import ModelRegistry


def msg(payload: Any, **fields: Any) -> Message:
    return Message(payload=payload, headers=Headers(tenant="t"), **fields)


@contextlib.asynccontextmanager
async def served(
    flow: PenguiFlow,
    backend: RedisBackend,
    *,
    registry: ModelRegistry | None = None,
    **options: Any,
) -> AsyncIterator[RemoteFlow]:
    """Serve ``flow`` from a task of this process and yield a started caller."""
    stop = asyncio.Event()
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def ready(*_: object) -> None:
        if not started.done():
            started.set_result(None)

    task = asyncio.create_task(
        serve(flow, backend, registry=registry, stop=stop, ready=ready, **options)
    )
    task.add_done_callback(ready)
    try:
        async with asyncio.timeout(10):
            await started
        if task.done():
            task.result()
        async with RemoteFlow(flow, backend, registry=registry) as remote:
            yield remote
    finally:
        stop.set()
        try:
            async with asyncio.timeout(10):
                await task
        finally:
            task.cancel()
            await backend.close()


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, checking every 5 ms, for at most ``timeout``."""
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.005)  # polling state in another process: no event to wait on
