"""Controller loop: one node that calls itself over a working memory (``WM``) until done.

    OpenSea -> controller <-> controller (self-loop) -> Rookery

Each hop the controller reads one more fact into ``WM.facts`` and charges 10 tokens. It
returns the updated ``WM`` (the runtime counts the hop and sends it back to the controller)
or, once it is confident, a ``FinalAnswer`` that goes straight to the Rookery. The runtime
enforces the budgets carried in ``WM``:

- ``budget_hops``: when the next hop would reach it, the caller gets
  ``FinalAnswer("Hop budget exhausted")``;
- ``budget_tokens``: once ``tokens_used`` reaches it, ``FinalAnswer("Token budget exhausted")``.

Three questions show the three endings.

Run it with ``python examples/controller.py``.
"""

from __future__ import annotations

import asyncio

from penguiflow import WM, Context, FinalAnswer, Headers, Message, Node, PenguiFlow, create

# Facts the controller can read, one per hop, and how many it needs to be confident.
LIBRARY = {
    "Where do emperor penguins live?": (
        ["They live in Antarctica.", "They breed on sea ice."],
        2,
    ),
    "Explain penguin evolution in full": (
        [
            "Penguins lost flight.",
            "Wings became flippers.",
            "Bones grew denser.",
            "Necks got shorter.",
        ],
        4,
    ),
}
TOKENS_PER_HOP = 10


async def controller(msg: Message, ctx: Context) -> Message:
    wm: WM = msg.payload
    facts_available, needed = LIBRARY[wm.query]
    facts = [*wm.facts, facts_available[len(wm.facts) % len(facts_available)]]
    confidence = min(1.0, len(facts) / needed)
    print(
        f"  {msg.trace_id:<8} hop {wm.hops}: read {facts[-1]!r:<28} "
        f"confidence={confidence:.2f} tokens={wm.tokens_used + TOKENS_PER_HOP}"
    )
    if confidence >= 1.0:
        answer = FinalAnswer(
            text=" ".join(facts), citations=[f"fact-{i}" for i in range(len(facts))]
        )
        return msg.model_copy(update={"payload": answer})
    # Leave ``hops`` alone: the runtime increments it when the WM comes back around.
    working = wm.model_copy(
        update={
            "facts": facts,
            "confidence": confidence,
            "tokens_used": wm.tokens_used + TOKENS_PER_HOP,
        }
    )
    return msg.model_copy(update={"payload": working})


def build() -> PenguiFlow:
    loop = Node(controller, name="controller", allow_cycle=True)
    return create(loop.to(loop))


async def main() -> dict[str, FinalAnswer]:
    flow = build()
    cases = {
        "answer": WM(query="Where do emperor penguins live?", budget_hops=8),
        "hops": WM(query="Explain penguin evolution in full", budget_hops=3),
        "tokens": WM(query="Explain penguin evolution in full", budget_tokens=25),
    }
    results: dict[str, FinalAnswer] = {}
    flow.run()
    try:
        for trace_id, wm in cases.items():
            print(
                f"{trace_id}: {wm.query!r} (budget_hops={wm.budget_hops}, "
                f"budget_tokens={wm.budget_tokens})"
            )
            await flow.emit(Message(payload=wm, headers=Headers(tenant="t"), trace_id=trace_id))
            out = await flow.fetch()
            results[trace_id] = out.payload
            print(f"  => {out.payload.text!r}")
    finally:
        await flow.stop()
    return results


if __name__ == "__main__":
    asyncio.run(main())
