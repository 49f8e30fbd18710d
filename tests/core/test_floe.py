"""``Floe`` on its own: limits, FIFO waiters, cancellation, bulk removal, ready-signals, fairness.

Floes here are built bare (``Floe(None, None, maxsize=N)``) and driven directly; only the last
test runs a flow. Waits are bounded by ``within`` and the tests run under ``looptime``, so a
waiter that is never woken fails the test at once (the timeout is virtual) instead of after
ten real seconds.

Orderings are set up with ``start``: each task it returns has run up to its first suspension,
so tasks started one after another queue up at the floe in that order. Whatever is done
between two awaits of a test happens in one step of the loop, before any woken task runs.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow._runtime.floe import Floe, FloeStatistics, ReadySignal
from penguiflow.core import PenguiFlow

from .helpers import Gate, node, running, start, within

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

pytestmark = pytest.mark.looptime


def full_floe(maxsize: int, *items: Any) -> Floe[Any]:
    """A bare floe holding ``items`` (as many as ``maxsize`` to make it full)."""
    floe: Floe[Any] = Floe(None, None, maxsize=maxsize)
    for item in items:
        assert floe.try_push(item)
    return floe


async def producers(floe: Floe[Any], *items: Any) -> list[asyncio.Task[None]]:
    """Start one producer per item, in order; each pushes its item and may block."""
    return [await start(floe.push(item)) for item in items]


async def consumers(floe: Floe[Any], count: int) -> list[asyncio.Task[Any]]:
    """Start ``count`` consumers in order; each pops one item and may block."""
    return [await start(floe.pop()) for _ in range(count)]


async def reap(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel what is still running and wait for every task to end."""
    for task in tasks:
        task.cancel()
    await within(asyncio.gather(*tasks, return_exceptions=True))


# -- limits and the non-waiting calls ------------------------------------------------------------


async def test_nowait_calls_fill_to_the_limit_then_refuse_and_take_in_fifo_order() -> None:
    floe: Floe[str] = Floe(None, None, maxsize=2)
    assert floe.queue is floe
    assert (floe.maxsize, floe.qsize(), floe.empty(), floe.full()) == (2, 0, True, False)
    assert floe.try_push("a")
    floe.put_nowait("b")
    assert (floe.qsize(), floe.empty(), floe.full(), floe.has_room()) == (2, False, True, False)
    assert not floe.try_push("c")
    with pytest.raises(asyncio.QueueFull):
        floe.put_nowait("c")
    assert list(floe.items) == ["a", "b"]  # the refused pushes left nothing behind
    assert floe.pop_nowait() == "a"
    assert floe.get_nowait() == "b"
    assert floe.empty()
    with pytest.raises(asyncio.QueueEmpty):
        floe.pop_nowait()
    with pytest.raises(asyncio.QueueEmpty):
        floe.get_nowait()


async def test_put_and_get_wait_for_room_and_for_an_item() -> None:
    """``put`` on a full floe waits until a ``get`` frees a slot; ``get`` on an empty floe waits
    until an item comes."""
    floe = full_floe(1, "x")
    putter = await start(floe.put("y"))
    assert not putter.done()
    assert await within(floe.get()) == "x"
    await within(putter)
    assert await within(floe.get()) == "y"
    getter = await start(floe.get())
    assert not getter.done()
    floe.put_nowait("z")
    assert await within(getter) == "z"


@pytest.mark.parametrize("maxsize", [0, -1, -5])
async def test_a_limit_of_zero_or_less_is_unbounded(maxsize: int) -> None:
    floe: Floe[int] = Floe(None, None, maxsize=maxsize)
    assert all(floe.try_push(i) for i in range(1_000))
    floe.put_nowait(1_000)
    await within(floe.push(1_001))  # the floe never fills, so push never waits
    assert (floe.maxsize, floe.full(), floe.has_room()) == (0, False, True)
    assert floe.statistics() == FloeStatistics(
        current_items=1_002, max_items=0, waiting_producers=0, waiting_consumers=0
    )
    assert [floe.pop_nowait() for _ in range(1_002)] == list(range(1_002))


# -- producers -----------------------------------------------------------------------------------


async def test_blocked_producers_are_admitted_in_arrival_order_as_items_are_taken() -> None:
    """Five producers block on a full floe, in order. A newcomer's ``try_push`` is refused while
    they wait. Each ``pop_nowait`` moves the longest-waiting producer's item into the freed slot
    in the same call, so the floe stays full and the next newcomer still finds no room."""
    floe = full_floe(2, "a", "b")
    waiting = await producers(floe, "p0", "p1", "p2", "p3", "p4")
    assert not any(task.done() for task in waiting)
    assert floe.statistics().waiting_producers == 5
    assert not floe.try_push("late")
    with pytest.raises(asyncio.QueueFull):
        floe.put_nowait("late")

    taken = []
    for admitted in ("p0", "p1", "p2", "p3", "p4"):
        taken.append(floe.pop_nowait())
        assert floe.items[-1] == admitted  # moved in within the same call
        assert floe.full()
        assert not floe.try_push("late")
    await within(asyncio.gather(*waiting))
    taken += [floe.pop_nowait(), floe.pop_nowait()]
    assert taken == ["a", "b", "p0", "p1", "p2", "p3", "p4"]
    assert floe.statistics().waiting_producers == 0


async def test_entered_runs_in_the_step_the_item_enters_before_a_consumer_sees_it() -> None:
    """Waiting path: a producer blocks on a full floe; a consumer then takes "x" and "p" back to
    back. The producer's ``entered`` runs inside the first take, with "p" already in the floe,
    and so before the consumer can get "p". Fast path: a consumer waits on an empty floe; a
    push calls ``entered`` before it returns, so before the woken consumer runs."""
    log: list[tuple[str, Any]] = []
    floe = full_floe(1, "x")
    producer = await start(floe.push("p", lambda: log.append(("entered", list(floe.items)))))

    async def consume_two() -> None:
        for _ in range(2):
            log.append(("got", await floe.pop()))

    await within(await start(consume_two()))
    await within(producer)
    assert log == [("entered", ["p"]), ("got", "x"), ("got", "p")]

    log.clear()

    async def consume_one() -> None:
        log.append(("got", await floe.pop()))

    consumer = await start(consume_one())
    await within(floe.push("q", lambda: log.append(("entered", list(floe.items)))))
    await within(consumer)
    assert log == [("entered", ["q"]), ("got", "q")]


@pytest.mark.parametrize("settled", [True, False], ids=["cancel-settled", "cancel-same-step"])
async def test_cancelling_a_waiting_producer_withdraws_its_item(settled: bool) -> None:
    """p0 and p1 wait on a full floe; p0 is cancelled. Its item never enters, its ``entered``
    is never called, and p1 moves into the next freed slot. With ``cancel-same-step`` the slot
    frees before p0 has even handled its cancellation."""
    entered: list[str] = []
    floe = full_floe(1, "x")
    p0 = await start(floe.push("p0", lambda: entered.append("p0")))
    p1 = await start(floe.push("p1", lambda: entered.append("p1")))
    p0.cancel()
    if settled:
        with pytest.raises(asyncio.CancelledError):
            await p0
    assert floe.statistics().waiting_producers == 1
    assert floe.pop_nowait() == "x"
    assert list(floe.items) == ["p1"]
    assert entered == ["p1"]
    await within(p1)
    with pytest.raises(asyncio.CancelledError):
        await p0
    assert floe.pop_nowait() == "p1"
    assert floe.empty()
    assert floe.statistics().waiting_producers == 0
    assert entered == ["p1"]


async def test_a_producer_cancelled_after_its_item_entered_still_delivers_it_once() -> None:
    """The producer's item is admitted (a slot freed), then the producer is cancelled in the same
    step, before it resumed. ``push`` raises ``CancelledError``; the item stays, counted once."""
    entered: list[str] = []
    floe = full_floe(1, "x")
    producer = await start(floe.push("p", lambda: entered.append("p")))
    assert floe.pop_nowait() == "x"
    producer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await producer
    assert producer.cancelled()
    assert list(floe.items) == ["p"]
    assert entered == ["p"]
    assert floe.pop_nowait() == "p"
    assert floe.empty()
    assert floe.statistics().waiting_producers == 0


# -- consumers -----------------------------------------------------------------------------------


async def test_waiting_consumers_are_woken_in_arrival_order() -> None:
    floe: Floe[str] = Floe(None, None, maxsize=3)
    waiting = await consumers(floe, 3)
    assert floe.statistics().waiting_consumers == 3
    for item in ("a", "b", "c"):
        assert floe.try_push(item)
    assert [await within(task) for task in waiting] == ["a", "b", "c"]
    assert floe.empty()


@pytest.mark.parametrize("settled", [True, False], ids=["cancel-settled", "cancel-same-step"])
async def test_a_consumer_cancelled_while_waiting_leaves_the_line_and_takes_nothing(
    settled: bool,
) -> None:
    """c0 and c1 wait; c0 is cancelled, then "a" and "b" come. c1 gets "a" and "b" stays
    queued: the cancelled consumer took nothing. With ``cancel-same-step`` the items come
    before c0 has handled its cancellation."""
    floe: Floe[str] = Floe(None, None, maxsize=3)
    c0, c1 = await consumers(floe, 2)
    c0.cancel()
    if settled:
        with pytest.raises(asyncio.CancelledError):
            await c0
    assert floe.statistics().waiting_consumers == 1
    assert floe.try_push("a")
    assert floe.try_push("b")
    assert await within(c1) == "a"
    with pytest.raises(asyncio.CancelledError):
        await c0
    assert list(floe.items) == ["b"]


async def test_a_woken_consumer_that_is_cancelled_passes_the_wake_up_on() -> None:
    """c0 and c1 wait; "a" comes and wakes c0, which is cancelled in the same step, before it
    took "a". c0 hands its wake-up to c1, which gets "a"."""
    floe: Floe[str] = Floe(None, None, maxsize=1)
    c0, c1 = await consumers(floe, 2)
    assert floe.try_push("a")
    c0.cancel()
    with pytest.raises(asyncio.CancelledError):
        await c0
    assert await within(c1) == "a"
    assert floe.empty()


# -- bulk operations -----------------------------------------------------------------------------


async def test_remove_where_keeps_the_rest_in_order_and_admits_waiting_producers_in_order() -> None:
    floe = full_floe(4, 1, 2, 3, 4)
    waiting = await producers(floe, 5, 6, 7)
    assert floe.remove_where(lambda item: item > 10) == []
    assert list(floe.items) == [1, 2, 3, 4]
    assert floe.statistics().waiting_producers == 3

    assert floe.remove_where(lambda item: item % 2 == 0) == [2, 4]
    assert list(floe.items) == [1, 3, 5, 6]  # two slots freed: the two first producers moved in
    assert floe.statistics().waiting_producers == 1
    await within(asyncio.gather(*waiting[:2]))
    assert not waiting[2].done()
    assert [floe.pop_nowait() for _ in range(5)] == [1, 3, 5, 6, 7]
    await within(waiting[2])


async def test_clear_returns_everything_and_admits_waiting_producers_in_order() -> None:
    floe = full_floe(2, "a", "b")
    waiting = await producers(floe, "c", "d", "e")
    assert floe.clear() == ["a", "b"]
    assert list(floe.items) == ["c", "d"]
    assert floe.statistics().waiting_producers == 1
    assert floe.clear() == ["c", "d"]
    assert list(floe.items) == ["e"]
    await within(asyncio.gather(*waiting))
    assert floe.clear() == ["e"]
    assert floe.clear() == []
    assert floe.empty()


async def test_put_back_may_exceed_the_limit_and_producers_wait_until_below_it() -> None:
    floe = full_floe(2, "a", "b")
    floe.put_back(["c", "d"])
    assert list(floe.items) == ["a", "b", "c", "d"]
    assert (floe.qsize(), floe.full(), floe.try_push("late")) == (4, True, False)
    producer = await start(floe.push("e"))
    assert floe.pop_nowait() == "a"
    assert floe.pop_nowait() == "b"
    assert floe.statistics().waiting_producers == 1  # two left: still at the limit
    assert floe.pop_nowait() == "c"
    assert list(floe.items) == ["d", "e"]
    await within(producer)
    floe.put_back([])
    assert list(floe.items) == ["d", "e"]


async def test_put_back_wakes_a_waiting_consumer_per_item() -> None:
    floe: Floe[str] = Floe(None, None, maxsize=1)
    c0, c1 = await consumers(floe, 2)
    floe.put_back(["x", "y", "z"])
    assert [await within(c0), await within(c1)] == ["x", "y"]
    assert list(floe.items) == ["z"]


async def test_fail_consumers_makes_every_waiting_consumer_raise() -> None:
    floe: Floe[str] = Floe(None, None, maxsize=1)
    waiting = await consumers(floe, 2)
    error = RuntimeError("stopped")
    floe.fail_consumers(error)
    assert floe.statistics().waiting_consumers == 0
    for task in waiting:
        with pytest.raises(RuntimeError) as raised:
            await within(task)
        assert raised.value is error
    assert floe.try_push("a")  # later items are neither lost nor failed
    assert await within(floe.pop()) == "a"


async def test_fail_consumers_reaches_a_consumer_woken_but_not_yet_resumed() -> None:
    """The sequence of ``Roundtrip.cancel``: an item comes for a waiting consumer (waking it),
    then, in the same step, the floe is cleared and its consumers are failed. The woken consumer
    is still inside ``pop``, so it must raise, not go back to waiting on an empty floe."""
    floe: Floe[str] = Floe(None, None, maxsize=2)
    consumer = await start(floe.pop())
    assert floe.try_push("a")
    assert floe.clear() == ["a"]
    error = RuntimeError("trace cancelled")
    floe.fail_consumers(error)
    with pytest.raises(RuntimeError) as raised:
        await within(consumer)
    assert raised.value is error


# -- statistics ----------------------------------------------------------------------------------


async def test_statistics_count_items_the_limit_and_live_waiters() -> None:
    """Waiters are counted while they wait; one cancelled in this very step no longer counts."""
    floe: Floe[str] = Floe(None, None, maxsize=2)

    def figures() -> tuple[int, int, int, int]:
        stats = floe.statistics()
        return (
            stats.current_items,
            stats.max_items,
            stats.waiting_producers,
            stats.waiting_consumers,
        )

    assert figures() == (0, 2, 0, 0)
    c0, c1 = await consumers(floe, 2)
    assert figures() == (0, 2, 0, 2)
    c1.cancel()
    assert figures() == (0, 2, 0, 1)
    assert floe.try_push("a")
    assert await within(c0) == "a"
    assert figures() == (0, 2, 0, 0)
    floe.put_nowait("b")
    floe.put_nowait("c")
    p0, p1 = await producers(floe, "d", "e")
    assert figures() == (2, 2, 2, 0)
    p1.cancel()
    assert figures() == (2, 2, 1, 0)
    await reap([c1, p0, p1])
    assert figures() == (2, 2, 0, 0)


# -- ready-signals -------------------------------------------------------------------------------


async def test_a_listened_floe_notifies_its_signal_on_every_push() -> None:
    signal = ReadySignal()
    floe: Floe[str] = Floe(None, None, maxsize=2)
    floe.listen(signal)
    waiter = await start(signal.wait([floe]))
    assert floe.try_push("a")
    await within(waiter)
    waiter = await start(signal.wait([floe]))
    await within(floe.push("b"))
    await within(waiter)


async def test_a_listened_floe_notifies_its_signal_when_a_producer_moves_in() -> None:
    """Taking "x" notifies nobody by itself; the waiting producer's item moving into the freed
    slot is a push, and wakes the signal's waiter."""
    signal = ReadySignal()
    floe = full_floe(1, "x")
    producer = await start(floe.push("p"))
    floe.listen(signal)
    waiter = await start(signal.wait({floe}))
    assert floe.pop_nowait() == "x"
    await within(waiter)
    await within(producer)


async def test_listen_none_stops_the_notifications() -> None:
    """w1 and w2 wait on the signal. A push on the unlistened floe wakes nobody; a push on the
    other floe then wakes w1 only (had the first push woken w1, the second would wake w2, and
    w2 would have finished by the time the test resumes after w1)."""
    signal = ReadySignal()
    floe: Floe[str] = Floe(None, None, maxsize=2)
    other: Floe[str] = Floe(None, None, maxsize=2)
    floe.listen(signal)
    other.listen(signal)
    floe.listen(None)
    w1 = await start(signal.wait(None))
    w2 = await start(signal.wait(None))
    assert floe.try_push("a")
    assert other.try_push("b")
    await within(w1)
    assert not w2.done()
    await reap([w2])


async def test_a_push_wakes_the_longest_waiting_task_interested_in_that_floe() -> None:
    """w1 waits on another floe, w2 and w3 on ``floe``: a push on ``floe`` wakes w2 alone."""
    signal = ReadySignal()
    floe: Floe[str] = Floe(None, None, maxsize=2)
    other: Floe[str] = Floe(None, None, maxsize=2)
    floe.listen(signal)
    other.listen(signal)
    w1 = await start(signal.wait({other}))
    w2 = await start(signal.wait({floe}))
    w3 = await start(signal.wait({floe}))
    assert floe.try_push("a")
    await within(w2)
    assert not w1.done()
    assert not w3.done()
    await reap([w1, w3])


async def test_a_woken_signal_waiter_cancelled_hands_its_wake_up_to_a_waiter_of_that_floe() -> None:
    """w1 and w3 wait on ``floe``, w2 (in between) on another floe. A push on ``floe`` wakes w1,
    which is cancelled in the same step. Its wake-up must reach w3, the next task interested in
    ``floe``: w2 cannot take the item, and if it got the wake-up instead, w3 would sleep with an
    item waiting for it."""
    signal = ReadySignal()
    floe: Floe[str] = Floe(None, None, maxsize=2)
    other: Floe[str] = Floe(None, None, maxsize=2)
    floe.listen(signal)
    other.listen(signal)
    w1 = await start(signal.wait({floe}))
    w2 = await start(signal.wait({other}))
    w3 = await start(signal.wait({floe}))
    assert floe.try_push("a")
    w1.cancel()
    try:
        await within(w3)
        assert not w2.done()
    finally:
        await reap([w1, w2, w3])


# -- fairness ------------------------------------------------------------------------------------

PRODUCERS = 50
SIZE = 4
TAKEN = 1_000  # items taken from the producers: 20 each when shared fairly


async def fairness_run(
    consume: Callable[[Floe[Any], int], Awaitable[list[Any]]],
) -> list[int]:
    """Fill a floe of size ``SIZE``, start ``PRODUCERS`` producers (each pushing ``(index, k)``
    for k = 0, 1, ... in a loop), in index order; return the producer index of each of the
    first ``TAKEN`` items that ``consume(floe, count)`` takes after the ``SIZE`` fillers."""
    floe = full_floe(SIZE, *(("filler", k) for k in range(SIZE)))

    async def produce(index: int) -> None:
        k = 0
        while True:
            await floe.push((index, k))
            k += 1

    tasks = [await start(produce(index)) for index in range(PRODUCERS)]
    try:
        taken = await within(consume(floe, SIZE + TAKEN))
    finally:
        await reap(tasks)
    assert taken[:SIZE] == [("filler", k) for k in range(SIZE)]
    return [index for index, _ in taken[SIZE:]]


async def test_producers_in_a_loop_are_admitted_round_robin() -> None:
    """The consumer takes a floe-full of items, then yields to the loop once (``sleep(0)``, as a
    node that awaits anything), and so on. Each take admits the longest-waiting producer; the
    admitted producers resume during the yield and queue again at the back. So the items come
    strictly round-robin and every producer gets exactly its share. (On an ``asyncio.Queue`` a
    resumed putter finds the slots freed for the others and takes them: half the producers
    never get in.)"""

    async def by_floe_fulls(floe: Floe[Any], count: int) -> list[Any]:
        taken: list[Any] = []
        while len(taken) < count:
            taken += [await floe.pop() for _ in range(SIZE)]
            await asyncio.sleep(0)
        return taken[:count]

    order = await fairness_run(by_floe_fulls)
    assert order == [j % PRODUCERS for j in range(TAKEN)]
    fair = TAKEN / PRODUCERS
    shares = Counter(order)
    assert len(shares) == PRODUCERS
    assert all(fair / 2 <= count <= fair * 2 for count in shares.values()), shares


async def test_producers_in_a_loop_get_fair_shares_from_a_consumer_that_never_yields() -> None:
    """The consumer takes items back to back and suspends only when the floe is empty, as a
    worker whose node never awaits does. Every producer must still get within 2x of its fair
    share."""

    async def back_to_back(floe: Floe[Any], count: int) -> list[Any]:
        return [await floe.pop() for _ in range(count)]

    order = await fairness_run(back_to_back)
    fair = TAKEN / PRODUCERS
    shares = Counter(order)
    assert len(shares) == PRODUCERS
    assert all(fair / 2 <= count <= fair * 2 for count in shares.values()), shares


async def test_emitters_on_a_full_ingress_floe_complete_in_the_order_they_started_waiting() -> None:
    """The node holds "first" at a gate while four fillers fill the ingress floe (size 4). Then
    50 emitter tasks start one after another, each blocking in its first ``emit``; each emits a
    second time as soon as its first returns. Once the gate opens, those second emits race the
    emitters still waiting, which must not be overtaken: the first emits complete in the order
    they started waiting, and the node sees every item in the order its ``emit`` was called."""
    gate = Gate()
    processed: list[Any] = []
    expected = 1 + SIZE + 2 * PRODUCERS
    all_processed = asyncio.Event()

    async def take(msg: Any, ctx: Any) -> None:
        if msg == "first":
            await gate.pass_()
        processed.append(msg)
        if len(processed) == expected:
            all_processed.set()

    started: list[tuple[int, int]] = []
    completed: list[tuple[int, int]] = []

    async def emitter(index: int) -> None:
        for round_ in range(2):
            started.append((index, round_))
            await flow.emit((index, round_))
            completed.append((index, round_))

    a = node(take, "a")
    flow = PenguiFlow(a.to(), queue_maxsize=SIZE)
    async with running(flow):
        await flow.emit("first")
        await gate.wait_entered()
        fillers = [f"filler{k}" for k in range(SIZE)]
        for filler in fillers:
            await flow.emit(filler)
        tasks = [await start(emitter(index)) for index in range(PRODUCERS)]
        assert not any(task.done() for task in tasks)
        assert started == [(index, 0) for index in range(PRODUCERS)]
        gate.open()
        await within(asyncio.gather(*tasks))
        await within(all_processed.wait())
    assert [entry for entry in completed if entry[1] == 0] == started[:PRODUCERS]
    assert processed == ["first", *fillers, *started]
