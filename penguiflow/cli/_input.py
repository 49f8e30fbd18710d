"""What ``penguiflow run`` feeds a flow: input lines, and how each becomes a message.

Each non-blank line is one JSON value, and one trace:

- When the target gives a registry that registers the entry node (the flow's one ingress
  node, or ``--to NODE``), the value is validated by that node's input model and the model
  instance is emitted, as the flow's own code would emit it.
- Otherwise the value, whatever it is (object, string, number...), is the ``payload`` of a
  new ``Message`` with ``Headers(tenant=--tenant)`` and a fresh trace id; nothing else of
  the line is read, so a line ``{"payload": 1}`` is a payload that is a dict.

A run is *traced* when what is emitted carries a trace id (a ``Message``, or a model with a
``trace_id`` field): then lines run concurrently and each result is matched to its line. An
entry model without one has no trace in the runtime, so its lines run one at a time and the
next item the flow delivers is taken as the line's result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import stat
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import ValidationError

from .._runtime.endpoints import OPEN_SEA
from ..node import Node
from ..types import Headers, Message
from ._errors import CommandError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from pydantic import TypeAdapter

    from .._runtime.flow import PenguiFlow
    from ..registry import ModelRegistry

__all__ = ["Entry", "LineError", "entry_for", "ingress_nodes", "read_lines"]


class LineError(ValueError):
    """An input line that cannot be fed to the flow; the message says why."""


@dataclass(frozen=True, slots=True)
class Entry:
    """How input lines become what the flow is fed, and where it is sent."""

    node: Node | None
    """The node ``--to`` chose; None sends to every ingress node."""
    adapter: TypeAdapter[Any] | None
    """The entry node's input adapter, or None: a line's value is a Message's payload."""
    model: str
    """What a line must be, for errors: the input model's name, or ``JSON``."""
    traced: bool
    """Whether what is emitted carries a trace id (see the module docstring)."""
    tenant: str
    """The tenant of the Messages built from plain payloads."""

    def decode(self, text: str) -> tuple[Any, str | None]:
        """Return what to emit for one line, and its trace id (None when untraced).

        Raises:
            LineError: the line is not JSON, or not valid for the entry node's model.
        """
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LineError(f"invalid JSON: {exc}") from None
        if self.adapter is None:
            message = Message(payload=value, headers=Headers(tenant=self.tenant))
            return message, message.trace_id
        try:
            item = self.adapter.validate_python(value)
        except ValidationError as exc:
            raise LineError(f"not a valid {self.model}: {_errors(exc)}") from None
        if not self.traced:
            return item, None
        if not getattr(item, "trace_id", None):
            item.trace_id = uuid.uuid4().hex
        return item, str(item.trace_id)


def _errors(exc: ValidationError) -> str:
    """Pydantic's errors on one line: ``field.path: message; ...``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors()
    )


def ingress_nodes(flow: PenguiFlow) -> list[Node]:
    """The nodes the flow's input goes to (those with no parent), in the flow's order."""
    return [
        floe.target
        for floe in flow._floes
        if floe.source is OPEN_SEA and isinstance(floe.target, Node)
    ]


def _name(node: Node) -> str:
    return node.name or node.node_id


def entry_for(
    flow: PenguiFlow, registry: ModelRegistry | None, *, to: str | None, tenant: str
) -> Entry:
    """Decide how lines are fed to ``flow`` (see the module docstring).

    Raises:
        CommandError: ``to`` names no ingress node, or the registry registers entry nodes
            but the flow has several and ``to`` does not choose one.
    """
    ingress = ingress_nodes(flow)
    node = None
    if to is not None:
        named = [each for each in ingress if _name(each) == to]
        if not named:
            names = ", ".join(_name(each) for each in ingress)
            raise CommandError(f"--to {to}: the flow has no entry node of that name ({names})")
        node = named[0]
    candidates = [node] if node is not None else ingress
    registered = [each for each in candidates if registry is not None and registry.has(_name(each))]
    if registry is None or not registered:
        return Entry(node, None, "JSON", traced=True, tenant=tenant)
    if len(candidates) > 1:
        names = ", ".join(_name(each) for each in candidates)
        raise CommandError(f"the flow has several entry nodes ({names}): choose one with --to")
    model = registry.models(_name(registered[0]))[0]
    adapter = registry.adapters(_name(registered[0]))[0]
    traced = issubclass(model, Message) or "trace_id" in model.model_fields
    return Entry(node, adapter, model.__name__, traced=traced, tenant=tenant)


async def read_lines(stream: TextIO, *, buffer: int) -> AsyncGenerator[tuple[int, str], None]:
    """Yield ``(line number, text)`` for each non-blank line of ``stream``, counting from 1.

    A regular file (or an in-memory stream) is read directly; anything else (a pipe, a
    terminal) by a daemon thread, at most ``buffer`` lines ahead, so the flow runs while the
    producer is slow, and an interrupted command does not wait for a line that never comes.
    """
    number = 0
    if _is_file(stream):
        for text in stream:
            number += 1
            if text.strip():
                yield number, text
        return
    lines: asyncio.Queue[str | None] = asyncio.Queue(buffer)
    loop = asyncio.get_running_loop()
    threading.Thread(
        target=_pump, args=(stream, lines, loop), name="penguiflow: input", daemon=True
    ).start()
    while (line := await lines.get()) is not None:
        number += 1
        if line.strip():
            yield number, line


def _is_file(stream: TextIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        return True  # no file descriptor: in memory, so reading never blocks


def _pump(
    stream: TextIO, lines: asyncio.Queue[str | None], loop: asyncio.AbstractEventLoop
) -> None:
    """Read ``stream`` into ``lines`` (waiting while it is full), then put the end mark."""
    try:
        for text in stream:
            asyncio.run_coroutine_threadsafe(lines.put(text), loop).result()
        asyncio.run_coroutine_threadsafe(lines.put(None), loop).result()  # the end
    except (RuntimeError, concurrent.futures.CancelledError):
        return  # the loop closed, or is closing: the command is over
