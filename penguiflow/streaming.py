"""Streaming adapters: ``StreamChunk`` to SSE / WebSocket text, and flows to async iterators."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, TypeAlias

from .types import StreamChunk

if TYPE_CHECKING:
    from .core import Context, Endpoint, PenguiFlow
    from .node import Node
    from .types import Message

__all__ = ["chunk_to_ws_json", "emit_stream_events", "format_sse_event", "stream_flow"]

#: Turns one source event into ``(text, done, meta)``; source events can be anything.
EventAdapter: TypeAlias = Callable[[Any], tuple[str, bool, dict[str, Any]]]

#: Where a flow-level emit may go: an ingress node or endpoint, several, or None for all.
_Target: TypeAlias = "Node | Endpoint | Sequence[Node | Endpoint] | None"


def format_sse_event(
    chunk: StreamChunk, *, event_name: str | None = None, retry_ms: int | None = None
) -> str:
    """Render a chunk as one Server-Sent Events message, ending with a blank line.

    The lines are ``event:`` (``event_name``, else ``done`` or ``chunk``), ``id:`` (the
    sequence number), ``data:`` (the text), a second ``data:`` line with the JSON of ``meta``
    when it is non-empty, and ``retry:`` when ``retry_ms`` is given.
    """
    name = event_name or ("done" if chunk.done else "chunk")
    lines = [f"event: {name}", f"id: {chunk.seq}", f"data: {chunk.text}"]
    if chunk.meta:
        lines.append(f"data: {json.dumps(chunk.meta, ensure_ascii=False)}")
    if retry_ms is not None:
        lines.append(f"retry: {retry_ms}")
    return "\n".join(lines) + "\n\n"


def chunk_to_ws_json(chunk: StreamChunk, *, extra: Mapping[str, Any] | None = None) -> str:
    """Render a chunk as a JSON object for a WebSocket frame.

    The object holds ``stream_id``, ``seq``, ``text``, ``done`` and ``meta`` (``{}`` when
    empty), updated with ``extra``, which may override them.

    Raises:
        TypeError: ``meta`` or ``extra`` holds a value JSON cannot encode.
    """
    body: dict[str, Any] = {
        "stream_id": chunk.stream_id,
        "seq": chunk.seq,
        "text": chunk.text,
        "done": chunk.done,
        "meta": chunk.meta,
    }
    if extra:
        body.update(extra)
    return json.dumps(body, ensure_ascii=False)


async def stream_flow(
    flow: PenguiFlow,
    parent_msg: Message,
    *,
    to: _Target = None,
    timeout: float | None = None,  # noqa: ASYNC109 - signature fixed by the spec
    include_final: bool = False,
) -> AsyncGenerator[Any, None]:
    """Emit ``parent_msg`` into a running flow and yield what comes out of the Rookery.

    Each fetched item is unwrapped to its ``.payload`` when it has one. ``StreamChunk``
    payloads are yielded; a ``done`` chunk ends the stream unless ``include_final`` is set.
    The first payload that is not a chunk (a final answer, a ``FlowError``...) is yielded and
    always ends the stream. The flow is never stopped here.

    Consume it under ``contextlib.aclosing`` to end it early. Cancelling the consumer while it
    waits cancels the pending ``fetch``.

    Args:
        flow: A running flow; read in plain ``fetch()`` mode.
        parent_msg: The message to emit.
        to: The ingress target(s), as for ``PenguiFlow.emit``.
        timeout: Seconds each fetch may wait; None waits for ever.
        include_final: Keep going after a ``done`` chunk, up to the first non-chunk payload.

    Raises:
        TimeoutError: a fetch took longer than ``timeout``.
    """
    await flow.emit(parent_msg, to=to)
    while True:
        if timeout is None:
            item = await flow.fetch()
        else:
            # The timeout wraps only the fetch: never yield from inside a timeout block.
            async with asyncio.timeout(timeout):
                item = await flow.fetch()
        payload = item.payload if hasattr(item, "payload") else item
        yield payload
        if not isinstance(payload, StreamChunk):
            return
        if payload.done and not include_final:
            return


def _default_adapter(event: Any) -> tuple[str, bool, dict[str, Any]]:
    return str(event), False, {}


async def emit_stream_events(
    source: AsyncIterable[Any] | Iterable[Any],
    ctx: Context,
    parent_msg: Message,
    *,
    adapter: EventAdapter | None = None,
    to: _Target = None,
    final_meta: Mapping[str, Any] | None = None,
) -> None:
    """Turn each event of ``source`` into a chunk emitted from ``ctx``.

    For each event, ``text, done, meta = adapter(event)`` (default ``(str(event), False,
    {})``) and ``ctx.emit_chunk(parent=parent_msg, text=text, done=done, meta=meta, to=to)``.
    If no event was ``done``, a closing empty chunk with ``done=True`` and ``final_meta`` is
    emitted at the end. An async-generator source is closed on exit, early or not.

    Raises:
        RuntimeError: ``ctx`` is not attached to a running flow.
        Exception: whatever the source or the adapter raises.
    """
    convert = adapter if adapter is not None else _default_adapter
    saw_done = False

    async def _emit(event: Any) -> None:
        nonlocal saw_done
        text, done, meta = convert(event)
        await ctx.emit_chunk(parent=parent_msg, text=text, done=done, meta=meta, to=to)
        saw_done = saw_done or done

    if isinstance(source, AsyncIterable):
        async with _closing(source):
            async for event in source:
                await _emit(event)
    else:
        for event in source:
            await _emit(event)
    if not saw_done:
        final = dict(final_meta) if final_meta else {}
        await ctx.emit_chunk(parent=parent_msg, text="", done=True, meta=final, to=to)


@contextlib.asynccontextmanager
async def _closing(source: AsyncIterable[Any]) -> AsyncIterator[None]:
    """Close ``source`` on exit when it is an async generator (we consumed it, we close it)."""
    try:
        yield
    finally:
        if inspect.isasyncgen(source):
            await source.aclose()
