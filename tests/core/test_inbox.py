"""``Inbox`` on its own: results oldest first across its head and its queue, waiters woken in
order, a wake-up passed on by a waiter that goes away, and failures that reach a waiter
already woken."""

from __future__ import annotations

import asyncio

import pytest

from penguiflow._runtime.inbox import Inbox


async def wait_for_one(inbox: Inbox) -> object:
    """What ``Results.take`` does around the inbox: wait until a result is there, take it."""
    failures = inbox.failures
    while not inbox.size:
        future = inbox.waiter(failures)
        try:
            await future
        except BaseException:
            inbox.withdraw(future)
            raise
    return inbox.take_nowait()


def test_results_come_out_oldest_first_and_clear_returns_the_rest() -> None:
    inbox = Inbox()
    assert (inbox.size, inbox.qsize(), inbox.clear()) == (0, 0, [])
    for item in (None, "b", "c"):  # None is a result like any other
        inbox.push(item)
    assert inbox.qsize() == 3
    assert inbox.take_nowait() is None
    inbox.put_back(["d"])
    assert inbox.take_nowait() == "b"
    assert inbox.clear() == ["c", "d"]
    assert inbox.size == 0
    inbox.push("e")
    assert (inbox.take_nowait(), inbox.size) == ("e", 0)


async def test_waiters_are_served_in_arrival_order() -> None:
    inbox = Inbox()
    first = asyncio.create_task(wait_for_one(inbox))
    second = asyncio.create_task(wait_for_one(inbox))
    third = asyncio.create_task(wait_for_one(inbox))
    await asyncio.sleep(0)
    for item in ("a", "b", "c"):
        inbox.push(item)
    assert await asyncio.gather(first, second, third) == ["a", "b", "c"]


async def test_a_woken_waiter_that_is_cancelled_passes_its_result_on() -> None:
    inbox = Inbox()
    first = asyncio.create_task(wait_for_one(inbox))
    second = asyncio.create_task(wait_for_one(inbox))
    await asyncio.sleep(0)
    inbox.push("a")  # wakes the first, which is cancelled before it resumes
    first.cancel()
    assert await second == "a"
    assert first.cancelled()
    assert inbox.size == 0


async def test_fail_reaches_waiters_and_one_woken_that_finds_nothing() -> None:
    inbox = Inbox()
    woken = asyncio.create_task(wait_for_one(inbox))
    waiting = asyncio.create_task(wait_for_one(inbox))
    await asyncio.sleep(0)
    inbox.push("a")  # wakes ``woken``...
    assert inbox.clear() == ["a"]  # ...and the result is purged before it resumes
    inbox.fail(RuntimeError("stopped"))
    for task in (woken, waiting):
        with pytest.raises(RuntimeError, match="stopped"):
            await task
    inbox.push("b")  # a fetch that starts after the failure is served as usual
    assert await wait_for_one(inbox) == "b"
