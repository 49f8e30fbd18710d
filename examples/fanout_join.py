"""Fan-out and join: one request is sent to three workers and their answers are merged.

    OpenSea -> split -> {price, stock, reviews} -> merge (join_k, k=3) -> report -> Rookery

``split`` returns the message once; because it has three successors the runtime puts the
same message on all three floes. ``join_k("merge", 3)`` keeps one bucket per ``trace_id`` and
emits a single message, whose payload is the list of the three worker payloads, once the
third one for that trace has arrived. Two requests run at the same time to show that the
join never mixes traces.

Run it with ``python examples/fanout_join.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from penguiflow import Context, Headers, Message, Node, NodePolicy, PenguiFlow, create, join_k

# Stand-ins for three independent back ends, keyed by product.
PRICES = {"kettle": 39.0, "toaster": 24.5}
STOCK = {"kettle": 12, "toaster": 0}
REVIEWS = {"kettle": 4.6, "toaster": 3.9}


def _answer(msg: Message, part: dict[str, Any]) -> Message:
    """Return a copy of ``msg`` (same trace, headers and meta) carrying ``part``."""
    return msg.model_copy(update={"payload": part})


async def split(msg: Message, ctx: Context) -> Message:
    return msg


async def price(msg: Message, ctx: Context) -> Message:
    return _answer(msg, {"price": PRICES[msg.payload]})


async def stock(msg: Message, ctx: Context) -> Message:
    return _answer(msg, {"in_stock": STOCK[msg.payload]})


async def reviews(msg: Message, ctx: Context) -> Message:
    return _answer(msg, {"rating": REVIEWS[msg.payload]})


async def report(msg: Message, ctx: Context) -> Message:
    # ``join_k`` gave us one message whose payload lists the three parts in arrival order.
    merged: dict[str, Any] = {}
    for part in msg.payload:
        merged.update(part)
    merged["parts"] = len(msg.payload)
    return msg.model_copy(update={"payload": merged})


def build() -> PenguiFlow:
    raw = NodePolicy(validate="none")
    split_node = Node(split, name="split", policy=raw)
    workers = [Node(fn, name=fn.__name__, policy=raw) for fn in (price, stock, reviews)]
    merge = join_k("merge", 3)
    report_node = Node(report, name="report", policy=raw)
    return create(
        split_node.to(*workers),
        *(worker.to(merge) for worker in workers),
        merge.to(report_node),
        report_node.to(),
    )


async def main() -> dict[str, dict[str, Any]]:
    flow = build()
    products = {"req-kettle": "kettle", "req-toaster": "toaster"}
    flow.run()
    results: dict[str, dict[str, Any]] = {}
    try:
        # Both requests are in flight before the first result is read.
        for trace_id, product in products.items():
            await flow.emit(
                Message(payload=product, headers=Headers(tenant="shop"), trace_id=trace_id)
            )
        for _ in products:
            out = await flow.fetch()
            results[out.trace_id] = out.payload
    finally:
        await flow.stop()
    for trace_id, product in products.items():
        merged = results[trace_id]
        print(
            f"{trace_id}: {product} costs {merged['price']:.2f}, "
            f"{merged['in_stock']} in stock, rated {merged['rating']} "
            f"(merged {merged['parts']} parts)"
        )
    return results


if __name__ == "__main__":
    asyncio.run(main())
