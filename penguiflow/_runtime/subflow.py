"""``call_playbook``: run a subflow for one message, with cancellation following the parent.

The parent trace's cancel flag is watched by a helper task owned by the parent flow, and the
subflow is always stopped (shielded) before the caller sees the outcome, so no subflow task
outlives the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import TraceCancelled
from ..types import Message

if TYPE_CHECKING:
    from ..registry import ModelRegistry
    from .protocols import Runtime

__all__ = ["PlaybookFactory", "call_playbook"]

#: A zero-argument callable returning a fresh subflow (a ``PenguiFlow``) and its registry.
PlaybookFactory = Callable[[], "tuple[Runtime, ModelRegistry | None]"]


async def _watch(flag: asyncio.Event, flow: Runtime, trace_id: str) -> None:
    await flag.wait()
    if flow._running:
        await flow.cancel(trace_id)


def _unpack(playbook: PlaybookFactory) -> tuple[Runtime, ModelRegistry | None]:
    made: object = playbook()
    if not (isinstance(made, tuple) and len(made) == 2):
        name = getattr(playbook, "__qualname__", repr(playbook))
        raise TypeError(
            f"call_playbook: the playbook factory {name} must return a (flow, registry) pair "
            f"(registry may be None), got {type(made).__name__}"
        )
    return made


async def call_playbook(
    playbook: PlaybookFactory,
    parent_msg: Message,
    timeout: float | None = None,  # noqa: ASYNC109 - signature fixed by the contract
    *,
    runtime: Runtime | None = None,
) -> Any:
    """Run ``playbook()``'s flow on ``parent_msg`` and return its first Rookery result.

    The subflow sees ``parent_msg`` unchanged (same trace id and headers). A Message result is
    unwrapped to its payload. When ``runtime`` is the parent flow, cancelling the parent trace
    cancels the subflow's work for it.

    Raises:
        TraceCancelled: the parent trace was already cancelled (no subflow node runs), or was
            cancelled while the subflow ran.
        TimeoutError: ``timeout`` elapsed first.
    """
    flow, registry = _unpack(playbook)
    flow.run(registry=registry)
    trace_id: str | None = getattr(parent_msg, "trace_id", None)
    watcher: asyncio.Task[None] | None = None
    try:
        if runtime is not None and trace_id is not None:
            flag = runtime._trace_events.get(trace_id)
            if flag is not None and flag.is_set():
                raise TraceCancelled(trace_id)
            flag = runtime.ensure_trace_event(trace_id)
            watcher = runtime._spawn(
                _watch(flag, flow, trace_id), name=f"penguiflow:watch:{trace_id}"
            )
        try:
            await flow.emit(parent_msg)
            async with asyncio.timeout(timeout):
                # Watched: by trace, so that the watcher's cancel ends this wait with
                # TraceCancelled (the flag may be set by anyone, not only by a cancel that
                # also cancels this call).
                item = await (flow.fetch(trace_id=trace_id) if watcher else flow.fetch())
        except (TraceCancelled, asyncio.CancelledError):
            if trace_id is not None and flow._running:
                await flow.cancel(trace_id)
            raise
        return item.payload if isinstance(item, Message) else item
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.wait([watcher])
        await asyncio.shield(flow.stop())
