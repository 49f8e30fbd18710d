"""``Runtime``: what the engine's pieces may ask of the flow they belong to.

A context hands its flow to node code (``ctx.runtime``) and to subflows (``call_playbook``);
typing that as this protocol, not as ``PenguiFlow``, keeps ``flow`` at the top of the engine's
imports: nothing the flow builds imports it back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Coroutine

    from ..health import FlowHealth
    from ..node import Node
    from ..registry import ModelRegistry
    from ..types import Message, StreamChunk
    from .endpoints import Endpoint, Target

__all__ = ["Runtime"]


class Runtime(Protocol):
    """The face of a running flow: ``PenguiFlow`` satisfies it."""

    _running: bool
    """Whether the flow runs (the contract's ``_running``)."""

    @property
    def _trace_events(self) -> dict[str, asyncio.Event | None]:
        """The cancel flag of each live trace (the contract's ``_trace_events``)."""

    @property
    def registry(self) -> ModelRegistry | None:
        """The registry given to ``run()``."""

    def run(self, *, registry: ModelRegistry | None = None) -> None:
        """Start the flow's workers."""

    async def stop(self) -> None:
        """Stop the flow and forget every trace."""

    async def emit(self, msg: Any, to: Target = None, *, trace_id: str | None = None) -> None:
        """Feed ``msg`` to the ingress nodes."""

    def emit_nowait(self, msg: Any, to: Target = None, *, trace_id: str | None = None) -> None:
        """Feed ``msg`` to the ingress nodes without waiting."""

    async def emit_chunk(
        self,
        *,
        parent: Message,
        text: str,
        stream_id: str | None = None,
        seq: int | None = None,
        done: bool = False,
        meta: dict[str, Any] | None = None,
        to: Target = None,
    ) -> StreamChunk:
        """Emit a stream chunk into the flow."""

    async def fetch(self, from_: Target = None, *, trace_id: str | None = None) -> Any:
        """Wait for the next Rookery item."""

    async def cancel(self, trace_id: str) -> bool:
        """Cancel one trace."""

    def ensure_trace_event(self, trace_id: str) -> asyncio.Event:
        """Return the cancel flag of ``trace_id``, creating it if needed."""

    def register_external_task(self, trace_id: str | None, task: asyncio.Task[Any]) -> None:
        """Track ``task`` for ``trace_id`` until it is done."""

    def health(self) -> FlowHealth:
        """Return a snapshot of the flow's health."""

    async def _emit_to_rookery(
        self, message: Any, *, source: Node | Endpoint | None = None
    ) -> None:
        """Deliver ``message`` to the Rookery straight away (upstream's examples use it)."""

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a helper task that the flow's ``stop()`` cancels if it still runs."""
