"""A flow for ``penguiflow serve`` to load by path: one node that upper-cases its payload
(and fails on ``"boom"``)."""

from __future__ import annotations

from typing import Any

from penguiflow.core import PenguiFlow, create
from penguiflow.node import Node, NodePolicy
from penguiflow.types import Message


async def shout(msg: Any, ctx: Any) -> Any:
    if isinstance(msg, Message):
        if msg.payload == "boom":
            raise ValueError("boom")
        return msg.model_copy(update={"payload": str(msg.payload).upper()})
    return msg


def build(state_store: Any = None) -> PenguiFlow:
    shouter = Node(shout, name="shout", policy=NodePolicy(validate="none"))
    return create(shouter.to(), state_store=state_store)
