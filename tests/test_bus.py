from __future__ import annotations

import dataclasses
from typing import Protocol

import pytest

import penguiflow.bus as bus
from penguiflow.bus import BusEnvelope, MessageBus


def test_all() -> None:
    assert bus.__all__ == ["BusEnvelope", "MessageBus"]


def test_envelope_has_seven_required_fields_in_order() -> None:
    names = [f.name for f in dataclasses.fields(BusEnvelope)]
    assert names == ["edge", "source", "target", "trace_id", "payload", "headers", "meta"]
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(BusEnvelope))
    assert all(f.default_factory is dataclasses.MISSING for f in dataclasses.fields(BusEnvelope))
    with pytest.raises(TypeError):
        BusEnvelope("a->b", "a", "b", None, 1, None)  # type: ignore[call-arg]


def test_envelope_is_slotted_and_keeps_payload_identity() -> None:
    payload = object()
    env = BusEnvelope(
        edge="a->b",
        source="a",
        target="b",
        trace_id="t",
        payload=payload,
        headers={"tenant": "x"},
        meta=None,
    )
    assert env.payload is payload
    assert not hasattr(env, "__dict__")
    assert env == BusEnvelope("a->b", "a", "b", "t", payload, {"tenant": "x"}, None)


def test_message_bus_is_a_protocol_that_is_not_runtime_checkable() -> None:
    assert Protocol in MessageBus.__mro__
    assert MessageBus._is_protocol  # type: ignore[attr-defined]
    assert not getattr(MessageBus, "_is_runtime_protocol", False)

    class Structural:
        async def publish(self, envelope: BusEnvelope) -> None:
            return None

    with pytest.raises(TypeError):
        isinstance(Structural(), MessageBus)  # type: ignore[misc]


async def test_message_bus_may_be_subclassed() -> None:
    published: list[BusEnvelope] = []

    class Recording(MessageBus):
        async def publish(self, envelope: BusEnvelope) -> None:
            published.append(envelope)

    env = BusEnvelope("*->b", None, "b", None, "x", None, None)
    sink: MessageBus = Recording()
    await sink.publish(env)
    assert published == [env]


async def test_default_publish_body_raises_not_implemented() -> None:
    class Lazy(MessageBus):
        pass

    with pytest.raises(NotImplementedError):
        await Lazy().publish(BusEnvelope("a->b", "a", "b", None, 1, None, None))
