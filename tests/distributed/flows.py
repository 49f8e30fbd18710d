"""Flows the distributed tests serve from worker subprocesses (``penguiflow worker``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from penguiflow import Headers, Message, Node, NodePolicy, create
from penguiflow.registry import ModelRegistry

if TYPE_CHECKING:
    from penguiflow.core import PenguiFlow


class Item(BaseModel):
    n: int
    sleep_s: float = 0.0
    poison: bool = False


def headers() -> Headers:
    return Headers(tenant="t")


async def _first(msg: Message, ctx: object) -> Message:
    item: Item = msg.payload
    if item.poison:
        os._exit(17)  # a message that crashes its worker every time
    if item.sleep_s:
        await asyncio.sleep(item.sleep_s)
    return msg.model_copy(update={"payload": Item(n=item.n + 1000, sleep_s=item.sleep_s)})


async def _second(msg: Message, ctx: object) -> Message:
    item: Item = msg.payload
    return msg.model_copy(update={"payload": Item(n=item.n + 1)})


def chain() -> tuple[PenguiFlow, ModelRegistry]:
    """first -> second -> Rookery: the output is n + 1001."""
    first = Node(_first, name="first", policy=NodePolicy(validate="none"))
    second = Node(_second, name="second", policy=NodePolicy(validate="none"))
    flow = create(
        first.to(second), second.to(), queue_maxsize=int(os.environ.get("PF_MAXSIZE", "16"))
    )
    registry = ModelRegistry()
    registry.register("first", Item, Item)
    registry.register("second", Item, Item)
    return flow, registry


async def _marked(msg: Message, ctx: object) -> Message:
    """Writes a file when called and when cancelled, so that the test sees both from outside."""
    item: Item = msg.payload
    marks = Path(os.environ["PF_MARKS"])
    pid = os.getpid()
    (marks / f"start-{item.n}-{pid}").write_text("")
    try:
        await asyncio.sleep(item.sleep_s)
    except asyncio.CancelledError:
        (marks / f"cancelled-{item.n}-{pid}").write_text("")
        raise
    (marks / f"done-{item.n}-{pid}").write_text("")
    return msg


def marked() -> tuple[PenguiFlow, ModelRegistry]:
    """slow -> Rookery, leaving marks in ``$PF_MARKS``."""
    slow = Node(_marked, name="slow", policy=NodePolicy(validate="none"))
    flow = create(slow.to())
    registry = ModelRegistry()
    registry.register("slow", Item, Item)
    return flow, registry
