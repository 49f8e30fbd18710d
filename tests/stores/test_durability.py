"""Durable admission, the events a store keeps, leases and recovery, inside one process.

``emit()`` returns once the new trace's start is committed and ``fetch()`` once its end is
(``durability="commit"``), both checked by holding the store's commit on a gate; the weaker
``"queued"`` mode returns at once. The kill -9 trials (``tests/recovery``) check the same
promise across a real crash.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from core.helpers import echo, make_msg, node, start

from penguiflow.core import PenguiFlow
from penguiflow.stores import MemoryStore
from penguiflow.stores.sqlite import SQLiteStore

from .conftest import FakeClock, GatedCommits

if TYPE_CHECKING:
    from pathlib import Path

    from penguiflow.types import Message

TIMEOUT = 10.0


class GatedMemory(GatedCommits, MemoryStore):
    """A MemoryStore whose commits wait for ``gate`` once armed."""

    armed = False

    def arm(self) -> None:
        super().arm()
        self.armed = True

    async def _commit_batch(self, batch: Any) -> None:
        if self.armed:
            await super()._commit_batch(batch)
        else:
            await MemoryStore._commit_batch(self, batch)


async def statuses(store: MemoryStore | SQLiteStore) -> dict[str, str]:
    return {t.trace_id: t.status for t in await store.list_traces()}


async def test_emit_returns_once_the_start_is_committed() -> None:
    store = GatedMemory()
    await store.start()
    flow = PenguiFlow(node(echo, "a").to(), state_store=store)
    flow.run()
    try:
        store.arm()
        emitting = asyncio.create_task(flow.emit(make_msg("x", trace_id="t1"), trace_id="t1"))
        await store.entered.wait()  # the start is being committed
        await asyncio.sleep(0)
        assert not emitting.done()
        store.gate.set()
        async with asyncio.timeout(TIMEOUT):
            await emitting
        assert (await statuses(store))["t1"] == "running"
    finally:
        await flow.stop()
        await store.close()


async def test_fetch_hands_out_a_result_once_the_end_is_committed() -> None:
    store = GatedMemory()
    await store.start()
    flow = PenguiFlow(node(echo, "a").to(), state_store=store)
    flow.run()
    try:
        await flow.emit(make_msg("x", trace_id="t1"), trace_id="t1")
        store.arm()
        fetching = asyncio.create_task(flow.fetch(trace_id="t1"))
        await store.entered.wait()  # the end is being committed
        await asyncio.sleep(0)
        assert not fetching.done()
        store.gate.set()
        async with asyncio.timeout(TIMEOUT):
            assert (await fetching).payload == "x"
        assert (await statuses(store))["t1"] == "finished"
    finally:
        await flow.stop()
        await store.close()


async def test_queued_durability_returns_before_the_commit() -> None:
    store = GatedMemory(durability="queued")
    await store.start()
    flow = PenguiFlow(node(echo, "a").to(), state_store=store)
    flow.run()
    try:
        store.arm()
        async with asyncio.timeout(TIMEOUT):
            await flow.emit(make_msg("x", trace_id="t1"), trace_id="t1")
            assert (await flow.fetch(trace_id="t1")).payload == "x"
        assert store.pending_writes > 0  # acknowledged and fetched, not yet committed
        store.gate.set()
        await store.flush()
        assert (await statuses(store))["t1"] == "finished"
    finally:
        await flow.stop()
        await store.close()


@pytest.mark.parametrize(
    ("events", "kept"),
    [
        ("all", {"node_start", "node_success"}),
        ("none", set()),
        (["node_success"], {"node_success"}),
    ],
)
async def test_a_store_keeps_the_event_kinds_it_asks_for(events: Any, kept: set[str]) -> None:
    seen: list[str] = []
    store = MemoryStore(events=events)
    await store.start()
    flow = PenguiFlow(node(echo, "a").to(), state_store=store)
    flow.run()
    try:
        await flow.emit(make_msg("x", trace_id="t1"), trace_id="t1")
        await flow.fetch(trace_id="t1")
    finally:
        await flow.stop()
    seen = [e.kind for e in await store.load_history("t1")]
    assert set(seen) == kept
    assert (await statuses(store)) == {"t1": "finished"}  # the journal is kept either way
    await store.close()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"durability": "fast"}, "durability must be"),
        ({"events": "some"}, "events must be"),
        ({"events": [1]}, "events must be strings"),
        ({"lease_ttl_s": 0}, "lease_ttl_s must be finite and > 0"),
        ({"lease_ttl_s": float("inf")}, "lease_ttl_s must be finite and > 0"),
        ({"owner_id": ""}, "owner_id must be a non-empty str"),
    ],
)
def test_bad_store_options_are_named(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MemoryStore(**options)


async def test_claims_respect_live_leases_and_take_expired_ones(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "s.db"
    first = SQLiteStore(path, clock=clock, lease_ttl_s=10.0)
    second = SQLiteStore(path, clock=clock, lease_ttl_s=100.0)
    await first.start()
    await second.start()
    try:
        await first.save_trace_start("a", '{"n": 1}', flow_key="f")
        await first.save_trace_start("b", '{"n": 2}', flow_key="f", targets=["x"])
        await first.save_trace_start("other", '{"n": 3}', flow_key="g")
        await first.flush()
        assert await second.claim_traces("f") == []  # first's lease is live
        clock.now += 11.0  # first's lease expires (its heartbeat never ran: no time passed)
        taken = await second.claim_traces("f")
        assert [(t.trace_id, t.targets) for t in taken] == [("a", None), ("b", '["x"]')]
        assert {t.lease_id for t in taken} == {second.lease.lease_id}
        assert await first.claim_traces("f") == []  # now second's, and second is live
        # A store's own running traces come back to it (it skips those it still runs).
        again = await second.claim_traces("f")
        assert [t.trace_id for t in again] == ["a", "b"]
    finally:
        await first.close()
        await second.close()


async def test_a_closed_store_leaves_its_traces_to_take_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = SQLiteStore(path)
    await first.start()
    await first.save_trace_start("a", '{"n": 1}', flow_key="f")
    await first.close()
    async with SQLiteStore(path) as second:
        assert [t.trace_id for t in await second.claim_traces("f")] == ["a"]


async def test_an_owner_id_given_again_takes_over_its_earlier_traces(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    earlier = SQLiteStore(path, owner_id="svc-1")
    await earlier.start()
    await earlier.save_trace_start("a", '{"n": 1}', flow_key="f")
    await earlier.flush()
    try:
        async with SQLiteStore(path, owner_id="svc-2") as stranger:
            assert await stranger.claim_traces("f") == []
        async with SQLiteStore(path, owner_id="svc-1") as restarted:
            assert [t.trace_id for t in await restarted.claim_traces("f")] == ["a"]
    finally:
        await earlier.close()


@pytest.mark.looptime
async def test_the_heartbeat_keeps_the_lease_alive() -> None:
    clock = FakeClock()
    loop = asyncio.get_running_loop()
    start = loop.time()
    clock_of = lambda: clock.now + (loop.time() - start)  # noqa: E731 - wall time follows the loop
    holder = MemoryStore(clock=clock_of, lease_ttl_s=3.0)
    await holder.start()
    try:
        await holder.save_trace_start("a", '{"n": 1}', flow_key="f")
        await holder.flush()
        await asyncio.sleep(30.0)  # ten lease lifetimes, renewed every second
        assert await holder._claim("f", "someone-else", clock_of(), 10) == []
    finally:
        await holder.close()
    # Closed: the lease ended, so its trace is free.
    reopened_claim = await holder._claim("f", "someone-else", clock_of(), 10)
    assert [t.trace_id for t in reopened_claim] == ["a"]


async def recovered_results(flow: PenguiFlow, count: int) -> list[Message]:
    async with asyncio.timeout(TIMEOUT):
        return [await flow.fetch() for _ in range(count)]


async def test_recovery_resends_to_the_original_targets_and_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    seen: list[tuple[str, str]] = []

    async def tag(message: Message, ctx: Any) -> Message:
        seen.append((ctx.owner.name, message.trace_id))
        return message

    def build(store: SQLiteStore) -> PenguiFlow:
        left, right = node(tag, "left"), node(tag, "right")
        return PenguiFlow(left.to(), right.to(), queue_maxsize=2, state_store=store)

    # A first process journaled 20 traces to "right" and 1 to every ingress, then died.
    async with SQLiteStore(path, owner_id="svc") as crashed:
        for i in range(20):
            await crashed.save_trace_start(
                f"r{i}", make_msg(i, trace_id=f"r{i}").model_dump_json(), flow_key=_key(build)
            )
        await crashed.flush()
    async with SQLiteStore(path, owner_id="svc") as store:
        flow = build(store)
        flow.run()
        try:
            count = await flow.recover()  # 20 traces, a flow that holds 2 per floe: no block
            assert count == 20
            assert flow.recovered() == 20
            results = await recovered_results(flow, 40)  # one from each ingress node
            assert sorted(r.trace_id for r in results) == sorted(2 * [f"r{i}" for i in range(20)])
            assert flow.recovered() == 0
            assert await flow.recover() == 0  # nothing is left, nothing is taken twice
        finally:
            await flow.stop()
        assert set((await statuses(store)).values()) == {"finished"}
    assert {name for name, _ in seen} == {"left", "right"}  # no targets: every ingress


async def test_recovered_traces_keep_their_targets(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    seen: list[str] = []

    async def tag(message: Message, ctx: Any) -> Message:
        seen.append(ctx.owner.name)
        return message

    def build(store: SQLiteStore) -> PenguiFlow:
        return PenguiFlow(node(tag, "left").to(), node(tag, "right").to(), state_store=store)

    async with SQLiteStore(path, owner_id="svc") as first:
        flow = build(first)
        flow.run()
        try:
            right = next(n for n in flow._nodes if n.name == "right")
            await flow.emit(make_msg("x", trace_id="t1"), to=right)
            assert (await statuses(first)) == {"t1": "running"}
        finally:
            await flow.stop()  # t1 is dropped unfinished, as by a crash
    seen.clear()
    async with SQLiteStore(path, owner_id="svc") as second:
        flow = build(second)
        flow.run()
        try:
            assert await flow.recover() == 1
            (result,) = await recovered_results(flow, 1)
            assert result.trace_id == "t1"
        finally:
            await flow.stop()
    assert seen == ["right"]


async def test_a_recovered_target_that_is_gone_ends_the_trace_as_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.db"

    def build(store: SQLiteStore) -> PenguiFlow:
        return PenguiFlow(node(echo, "left").to(), state_store=store)

    key = _key(build)
    async with SQLiteStore(path, owner_id="svc") as first:
        message = make_msg("x", trace_id="t1").model_dump_json()
        await first.save_trace_start("t1", message, flow_key=key, targets=["gone"])
    async with SQLiteStore(path, owner_id="svc") as second:
        flow = build(second)
        flow.run()
        try:
            assert await flow.recover() == 1
            async with asyncio.timeout(TIMEOUT):
                await flow.wait_recovered()  # the trace cannot be sent: it ends at once
            assert flow.recovered() == 0
        finally:
            await flow.stop()
        assert (await statuses(second)) == {"t1": "failed"}
    (failed,) = [r for r in caplog.records if r.getMessage() == "trace_recovery_failed"]
    assert failed.trace_id == "t1" and "gone" in str(failed.exception)


def _key(build: Any) -> str:
    """The flow key of the flow ``build`` makes (it does not depend on the store)."""
    flow = build(None)
    assert flow._journal is None
    from penguiflow._runtime.journal import flow_key

    return flow_key(flow._floes)


async def test_wait_recovered_returns_once_the_recovered_results_are_fetched(
    tmp_path: Path,
) -> None:
    """Two recovered traces: ``wait_recovered`` waits while their results are not fetched,
    returns once both are; with nothing recovered, and after ``stop()``, it returns at once."""
    path = tmp_path / "s.db"

    def build(store: SQLiteStore | None) -> PenguiFlow:
        return PenguiFlow(node(echo, "only").to(), state_store=store)

    async with SQLiteStore(path) as crashed:
        for trace_id in ("a", "b"):
            message = make_msg(trace_id, trace_id=trace_id).model_dump_json()
            await crashed.save_trace_start(trace_id, message, flow_key=_key(build))
    async with SQLiteStore(path) as store:
        flow = build(store)
        flow.run()
        try:
            await asyncio.wait_for(flow.wait_recovered(), TIMEOUT)  # nothing recovered yet
            assert await flow.recover() == 2
            waiting = asyncio.ensure_future(flow.wait_recovered())
            first = await asyncio.wait_for(flow.fetch(), TIMEOUT)
            assert not waiting.done() and flow.recovered() == 1
            second = await asyncio.wait_for(flow.fetch(), TIMEOUT)
            await asyncio.wait_for(waiting, TIMEOUT)
            assert {first.trace_id, second.trace_id} == {"a", "b"}
        finally:
            await flow.stop()
        await asyncio.wait_for(flow.wait_recovered(), TIMEOUT)


async def test_stop_releases_a_wait_for_recovered_traces(tmp_path: Path) -> None:
    """A recovered trace whose result nobody fetches: ``stop()`` forgets it, and the
    ``wait_recovered`` call that waited for it returns."""
    path = tmp_path / "s.db"

    def build(store: SQLiteStore | None) -> PenguiFlow:
        return PenguiFlow(node(echo, "only").to(), state_store=store)

    async with SQLiteStore(path) as crashed:
        message = make_msg("x", trace_id="a").model_dump_json()
        await crashed.save_trace_start("a", message, flow_key=_key(build))
    async with SQLiteStore(path) as store:
        flow = build(store)
        flow.run()
        assert await flow.recover() == 1
        waiting = await start(flow.wait_recovered())  # in place before the flow stops
        assert not waiting.done()
        await flow.stop()
        await asyncio.wait_for(waiting, TIMEOUT)
        assert flow.recovered() == 0
