"""Quickstart: a typed three-node pipeline with validation at every node boundary.

    OpenSea -> triage -> retrieve -> answer -> Rookery

Each node declares its input and output pydantic models in a ``ModelRegistry``. With
validation on (``NodePolicy(validate="both")``, the default), the runtime checks what goes
into and comes out of every node, so a plain ``dict`` emitted at the ingress is coerced into
a ``Question`` before ``triage`` sees it.

Run it with ``python examples/quickstart.py``.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from penguiflow import Context, ModelRegistry, Node, NodePolicy, PenguiFlow, create


class Question(BaseModel):
    text: str


class Triaged(BaseModel):
    text: str
    topic: str


class Retrieved(BaseModel):
    text: str
    topic: str
    passages: list[str]


class Answer(BaseModel):
    text: str
    topic: str
    sources: int


# A tiny in-memory "knowledge base" so the example needs no external service.
KNOWLEDGE = {
    "billing": ["Invoices are sent on the 1st.", "Refunds take 5 business days."],
    "shipping": ["Orders ship within 48 hours."],
    "other": [],
}


async def triage(question: Question, ctx: Context) -> Triaged:
    text = question.text.lower()
    if "refund" in text or "invoice" in text:
        topic = "billing"
    elif "ship" in text or "deliver" in text:
        topic = "shipping"
    else:
        topic = "other"
    return Triaged(text=question.text, topic=topic)


async def retrieve(item: Triaged, ctx: Context) -> Retrieved:
    return Retrieved(text=item.text, topic=item.topic, passages=KNOWLEDGE[item.topic])


async def answer(item: Retrieved, ctx: Context) -> Answer:
    text = " ".join(item.passages) or "Sorry, I have nothing on that yet."
    return Answer(text=text, topic=item.topic, sources=len(item.passages))


def build() -> tuple[PenguiFlow, ModelRegistry]:
    """Wire the flow and register the models each node reads and returns."""
    policy = NodePolicy(validate="both")
    triage_node = Node(triage, name="triage", policy=policy)
    retrieve_node = Node(retrieve, name="retrieve", policy=policy)
    answer_node = Node(answer, name="answer", policy=policy)
    flow = create(triage_node.to(retrieve_node), retrieve_node.to(answer_node), answer_node.to())

    registry = ModelRegistry()
    registry.register("triage", Question, Triaged)
    registry.register("retrieve", Triaged, Retrieved)
    registry.register("answer", Retrieved, Answer)
    return flow, registry


async def main() -> list[Answer]:
    flow, registry = build()
    questions: list[Question | dict[str, str]] = [
        Question(text="How long does a refund take?"),
        # A plain dict is fine too: the registry's adapter validates it into a Question.
        {"text": "When will my order ship?"},
    ]
    flow.run(registry=registry)
    answers: list[Answer] = []
    try:
        for question in questions:
            await flow.emit(question)
            result = await flow.fetch()
            asked = question.text if isinstance(question, Question) else question["text"]
            print(f"Q: {asked}")
            print(f"A: {result.text}  (topic={result.topic}, sources={result.sources})")
            answers.append(result)
    finally:
        await flow.stop()
    return answers


if __name__ == "__main__":
    asyncio.run(main())
