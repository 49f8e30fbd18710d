"""``KeyedLocks`` and the roundtrip admission line on their own: FIFO, and nothing left
behind by a waiter that is cancelled before or after it was served."""

from __future__ import annotations

import asyncio

import pytest

from penguiflow._runtime.results import KeyedLocks
from penguiflow.core import PenguiFlow

from .helpers import Gate, make_msg, node, running, start, within


async def test_locks_are_handed_over_in_order_with_fresh_tokens() -> None:
    locks = KeyedLocks()
    first = locks.try_acquire("k")
    assert first is not None
    assert locks.try_acquire("k") is None
    second = await start(locks.acquire("k"))
    third = await start(locks.acquire("k"))
    locks.release("k", object())  # a stale token frees nothing
    assert not second.done()
    locks.release("k", first)
    token2 = await within(second)
    assert not third.done()
    locks.release("k", first)  # the old holder's late release is ignored
    assert not third.done()
    locks.release("k", token2)
    token3 = await within(third)
    locks.release("k", token3)
    assert len(locks) == 0
    assert locks._waiting == {}


async def test_a_cancelled_waiter_leaves_no_claim() -> None:
    locks = KeyedLocks()
    first = locks.try_acquire("k")
    waiting = await start(locks.acquire("k"))
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert locks._waiting == {}
    locks.release("k", first)
    assert len(locks) == 0


async def test_a_waiter_served_then_cancelled_passes_the_lock_on() -> None:
    locks = KeyedLocks()
    first = locks.try_acquire("k")
    served = await start(locks.acquire("k"))
    after = await start(locks.acquire("k"))
    locks.release("k", first)  # served's future is done; cancel it before it resumes
    served.cancel()
    with pytest.raises(asyncio.CancelledError):
        await served
    token = await within(after)
    locks.release("k", token)
    assert len(locks) == 0


async def test_release_all_wakes_every_waiter() -> None:
    locks = KeyedLocks()
    locks.try_acquire("k")
    waiters = [await start(locks.acquire("k")) for _ in range(3)]
    locks.release_all()
    await within(asyncio.gather(*waiters))
    assert len(locks) == 0


async def test_an_emit_waiting_for_a_roundtrip_place_can_give_up() -> None:
    gate = Gate()

    async def held(msg: object, ctx: object) -> object:
        await gate.pass_()
        return msg

    flow = PenguiFlow(node(held, "a").to())
    flow._results.roundtrip_limit = 1
    async with running(flow):
        await flow.emit(make_msg("1"), trace_id="t1")
        given_up = await start(flow.emit(make_msg("2"), trace_id="t2"))
        served = await start(flow.emit(make_msg("3"), trace_id="t3"))
        given_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await given_up
        gate.open()
        assert (await within(flow.fetch(trace_id="t1"))).payload == "1"
        await within(served)  # the place went to the next in line, not to the one that left
        assert (await within(flow.fetch(trace_id="t3"))).payload == "3"
