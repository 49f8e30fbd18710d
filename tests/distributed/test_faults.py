"""Faults with real processes: worker processes killed with SIGKILL, a message that crashes
its worker, cancellation across processes, long calls, Redis restarted under load.

A caller's emits wait while it holds as many unread results as its bound (16 here), so every
test that emits more than that collects while it emits (``_emit_items`` in a task); a test that
emitted everything before its first fetch would wait on itself whenever the workers got ahead.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import TYPE_CHECKING, Any

import pytest
from stores.tcp_proxy import TcpProxy  # tests/stores, a sibling package (tests/ is on the path)

from penguiflow.distributed import RedisBackend, RemoteFlow

from .flows import Item, chain, marked
from .helpers import msg, until
from .servers import WorkerPool, child_env, worker_command

if TYPE_CHECKING:
    from pathlib import Path

    from .servers import RedisServer

CHAIN = "tests.distributed.flows:chain"
MARKED = "tests.distributed.flows:marked"


async def _emit_items(remote: RemoteFlow, count: int, *, sleep_s: float = 0.0) -> None:
    for i in range(count):
        await remote.emit(msg(Item(n=i, sleep_s=sleep_s)))


async def _collect(remote: RemoteFlow, count: int) -> list[int]:
    return [(await remote.fetch()).payload.n for _ in range(count)]


async def _no_more_results(remote: RemoteFlow) -> list[Any]:
    """Everything fetched before a last sentinel trace comes back: duplicates, if any."""
    await remote.emit(msg(Item(n=-1), trace_id="sentinel"))
    extra = []
    while (item := await remote.fetch()).trace_id != "sentinel":
        extra.append(item)
    return extra


@pytest.mark.timeout(60)
async def test_two_worker_processes_serve_one_flow_for_a_third(
    redis_server: RedisServer, pool: WorkerPool
) -> None:
    await pool.start(CHAIN, redis_server.url, "--nodes", "first")
    await pool.start(CHAIN, redis_server.url, "--nodes", "second")
    flow, registry = chain()
    backend = RedisBackend(redis_server.url)
    async with RemoteFlow(flow, backend, registry=registry) as remote:
        emitter = asyncio.create_task(_emit_items(remote, 30))
        got = await _collect(remote, 30)
        await emitter
        await remote.emit(msg(Item(n=5)), trace_id="mine")
        mine = await remote.fetch(trace_id="mine")
    assert sorted(got) == [i + 1001 for i in range(30)]
    assert (mine.trace_id, mine.payload.n) == ("mine", 1006)


@pytest.mark.timeout(180)
async def test_killing_workers_mid_run_loses_and_duplicates_nothing(
    redis_server: RedisServer, pool: WorkerPool
) -> None:
    """Twelve times, a worker is killed with SIGKILL while it holds calls in flight and a fresh
    one starts; every trace still ends exactly once."""
    options = ("--min-idle", "0.5", "--concurrency", "4", "--max-deliveries", "50")
    for _ in range(3):
        await pool.start(CHAIN, redis_server.url, *options)
    flow, registry = chain()
    backend = RedisBackend(redis_server.url)
    total, kills = 120, 12
    rng = random.Random(7)
    async with RemoteFlow(flow, backend, registry=registry) as remote:
        emitter = asyncio.create_task(_emit_items(remote, total, sleep_s=0.05))
        got: list[int] = []
        for round_ in range(kills):
            got += await _collect(remote, 8)
            victim = rng.choice(pool.alive())
            victim.kill()
            await pool.start(CHAIN, redis_server.url, *options)
            assert len(got) == 8 * (round_ + 1)
        got += await _collect(remote, total - len(got))
        await emitter
        extra = await _no_more_results(remote)
    assert sorted(got) == [i + 1001 for i in range(total)]
    assert extra == []
    assert await backend.dead_letters("first") == []
    await backend.close()


@pytest.mark.timeout(60)
async def test_a_message_that_crashes_its_worker_is_dead_lettered(
    redis_server: RedisServer, pool: WorkerPool
) -> None:
    """The poison message kills whichever worker runs it; dead workers are restarted. After
    max_deliveries it is dead-lettered, and every other trace finishes.

    The good items are emitted while their results are collected: the worker that dies holds
    what it read along with the poison until another takes it over, the emitter waits for
    room in the input stream meanwhile, and the results finished in that time would reach
    the caller's bound of unread results and make the next emit wait for a fetch."""
    options = ("--min-idle", "0.5", "--max-deliveries", "2", "--concurrency", "4")

    async def supervise() -> None:
        while True:
            while len(pool.alive()) < 2:
                await pool.start(CHAIN, redis_server.url, *options)
            exits = [asyncio.create_task(w.process.wait()) for w in pool.alive() if w.process]
            try:
                await asyncio.wait(exits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for each in exits:
                    each.cancel()

    flow, registry = chain()
    backend = RedisBackend(redis_server.url)
    supervisor = asyncio.create_task(supervise())
    try:
        async with RemoteFlow(flow, backend, registry=registry) as remote:
            await remote.emit(msg(Item(n=999, poison=True)), trace_id="poison")
            emitter = asyncio.create_task(_emit_items(remote, 30, sleep_s=0.01))
            got = await _collect(remote, 30)
            await emitter
            await until(lambda: _has_dead_letters(backend, "first"), timeout=60)
    finally:
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
    assert sorted(got) == [i + 1001 for i in range(30)]
    [letter] = await backend.dead_letters("first")
    assert letter.deliveries >= 2 and "ran 2 times (max_deliveries=2)" in letter.reason
    assert '"poison":true' in letter.envelope
    listed = await _run_cli("dlq", "list", CHAIN, "first", "--redis", redis_server.url)
    assert json.loads(listed)["id"] == letter.id
    await backend.close()


async def _has_dead_letters(backend: RedisBackend, node: str) -> bool:
    return bool(await backend.dead_letters(node))


async def _run_cli(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *worker_command("x", "y")[:3],
        *args,
        stdout=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode()


@pytest.mark.timeout(60)
async def test_cancel_reaches_a_call_in_another_process_within_100ms(
    redis_server: RedisServer, pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("PF_MARKS", str(marks))
    await pool.start(MARKED, redis_server.url)
    flow, registry = marked()
    backend = RedisBackend(redis_server.url)
    async with RemoteFlow(flow, backend, registry=registry) as remote:
        await remote.emit(msg(Item(n=1, sleep_s=30)), trace_id="doomed")
        await until(lambda: _marked(marks, "start-1-"))
        started = time.monotonic()
        await remote.cancel("doomed")
        await until(lambda: _marked(marks, "cancelled-1-"), timeout=1)
        elapsed = time.monotonic() - started
        await remote.emit(msg(Item(n=2)), trace_id="next")
        after = await remote.fetch(trace_id="next")
        client = await backend.connect()
        left = await client.xlen(remote.results)
    assert elapsed < 0.1, f"the call saw its cancellation after {elapsed * 1000:.0f} ms"
    assert after.trace_id == "next" and left == 0
    assert not list(marks.glob("done-1-*"))
    await backend.close()


async def _marked(marks: Path, prefix: str) -> bool:
    return bool(list(marks.glob(prefix + "*")))


@pytest.mark.timeout(60)
async def test_a_cancel_published_while_the_cancel_channel_is_down_still_reaches_the_call(
    redis_server: RedisServer, pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One transaction kills the worker's pub/sub connection, sets the trace's cancel marker
    and publishes the cancel, so that the message reaches nobody (PUBLISH answers 0). redis-py
    reconnects and subscribes again by itself; on the confirmation the worker reads the
    markers of the traces it holds and cancels the running call. A cancel published after
    that reaches the next call through the channel again."""
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("PF_MARKS", str(marks))
    await pool.start(MARKED, redis_server.url)
    flow, registry = marked()
    backend = RedisBackend(redis_server.url)
    keys = backend.keys
    client = await backend.connect()
    async with RemoteFlow(flow, backend, registry=registry) as remote:
        await until(lambda: _subscribed(client, keys.cancel_channel))
        await remote.emit(msg(Item(n=4, sleep_s=30)), trace_id="missed")
        await until(lambda: _marked(marks, "start-4-"))
        async with client.pipeline(transaction=True) as pipe:
            pipe.client_kill_filter(_type="pubsub")
            pipe.set(keys.cancelled("missed"), "1", ex=backend.cancel_ttl_s)
            pipe.publish(keys.cancel_channel, "missed")
            killed, _set, receivers = await pipe.execute()
        await until(lambda: _marked(marks, "cancelled-4-"))
        await remote.emit(msg(Item(n=5, sleep_s=30)), trace_id="later")
        await until(lambda: _marked(marks, "start-5-"))
        await remote.cancel("later")
        await until(lambda: _marked(marks, "cancelled-5-"))
    assert (killed, receivers) == (1, 0)
    assert not list(marks.glob("done-*"))
    await backend.close()


async def _subscribed(client: Any, channel: str) -> bool:
    [(_channel, count)] = await client.pubsub_numsub(channel)
    return bool(count)


@pytest.mark.timeout(60)
async def test_a_taken_over_entry_of_a_cancelled_trace_is_dropped_without_a_call(
    redis_server: RedisServer, pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker running a call is killed; the trace is cancelled while no worker runs; a
    worker started afterwards takes the entry over and drops it instead of calling the node
    (it never heard the cancel: only the marker tells it)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("PF_MARKS", str(marks))
    options = ("--min-idle", "0.3")
    first = await pool.start(MARKED, redis_server.url, *options)
    flow, registry = marked()
    backend = RedisBackend(redis_server.url)
    client = await backend.connect()
    async with RemoteFlow(flow, backend, registry=registry) as remote:
        [stream] = remote.topology.ingress.values()
        await remote.emit(msg(Item(n=6, sleep_s=30)), trace_id="orphan")
        await until(lambda: _marked(marks, "start-6-"))
        await first.reap()
        await remote.cancel("orphan")
        await pool.start(MARKED, redis_server.url, *options)
        await until(lambda: _stream_empty(client, stream))
        await remote.emit(msg(Item(n=8)), trace_id="after")
        after = await remote.fetch(trace_id="after")
    assert len(list(marks.glob("start-6-*"))) == 1
    assert after.payload.n == 8
    assert await backend.dead_letters("slow") == []
    await backend.close()


async def _stream_empty(client: Any, stream: str) -> bool:
    return await client.xlen(stream) == 0


@pytest.mark.timeout(60)
async def test_an_entry_whose_admission_fails_on_a_redis_error_is_taken_over_and_runs(
    redis_server: RedisServer, pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker reaches Redis through a proxy that resets every connection sending
    ``EXISTS``: the cancel check of an entry just read fails, after redis-py's own retries,
    between the read and the start. Once the worker reads again (it gave that entry up) the
    proxy forwards everything: the entry is released, taken over after min_idle and run,
    rather than held and heartbeated for good."""
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("PF_MARKS", str(marks))
    proxy = TcpProxy("127.0.0.1", redis_server.port)
    await proxy.start()
    try:
        await pool.start(MARKED, f"redis://{proxy.address}/0", "--min-idle", "0.5")
        flow, registry = marked()
        backend = RedisBackend(redis_server.url)
        async with RemoteFlow(flow, backend, registry=registry) as remote:
            proxy.drop = _EXISTS
            await remote.emit(msg(Item(n=9)), trace_id="admitted")
            await until(lambda: _read_after_failed_check(proxy.sent), timeout=20)
            proxy.drop = None
            async with asyncio.timeout(10):
                answer = await remote.fetch(trace_id="admitted")
    finally:
        await proxy.close()
    assert answer.payload.n == 9
    assert len(list(marks.glob("done-9-*"))) == 1
    await backend.close()


_EXISTS = b"\r\n$6\r\nEXISTS\r\n"
"""The EXISTS command as a client sends it (a script's text that uses EXISTS does not match)."""


async def _read_after_failed_check(sent: list[bytes]) -> bool:
    """Whether a client sent XREADGROUP after the first EXISTS (dropped by the proxy)."""
    first = next((i for i, chunk in enumerate(sent) if _EXISTS in chunk), None)
    return first is not None and any(b"XREADGROUP" in chunk for chunk in sent[first + 1 :])


@pytest.mark.timeout(60)
async def test_a_call_longer_than_min_idle_is_not_taken_over(
    redis_server: RedisServer, pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("PF_MARKS", str(marks))
    for _ in range(2):
        await pool.start(MARKED, redis_server.url, "--min-idle", "0.3")
    flow, registry = marked()
    backend = RedisBackend(redis_server.url)
    async with RemoteFlow(flow, backend, registry=registry) as remote:
        await remote.emit(msg(Item(n=7, sleep_s=2.0)), trace_id="long")
        answer = await remote.fetch(trace_id="long")
    assert answer.payload.n == 7
    assert len(list(marks.glob("start-7-*"))) == 1
    await backend.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["shutdown", "kill"])
async def test_redis_restarted_under_load(
    redis_server: RedisServer, pool: WorkerPool, how: str
) -> None:
    """Redis stops mid-run and comes back on the same port and AOF. After SHUTDOWN nothing
    acknowledged is lost; after SIGKILL the flow carries on. Workers and the caller reconnect
    by themselves; no worker loops on NOGROUP."""
    worker = await pool.start(CHAIN, redis_server.url, "--min-idle", "1")
    flow, registry = chain()
    backend = RedisBackend(redis_server.url)
    async with RemoteFlow(flow, backend, registry=registry) as remote:
        emitter = asyncio.create_task(_emit_items(remote, 20, sleep_s=0.05))
        got = await _collect(remote, 5)
        await emitter
        if how == "shutdown":
            redis_server.shutdown()
        else:
            redis_server.kill()
        redis_server.start()
        if how == "shutdown":
            got += await _collect(remote, 15)
        for i in range(100, 110):
            await remote.emit(msg(Item(n=i)), trace_id=f"after-{i}")
            assert (await remote.fetch(trace_id=f"after-{i}")).payload.n == i + 1001
    if how == "shutdown":
        assert sorted(got) == [i + 1001 for i in range(20)]
    recreated = [line for line in worker.lines if "group_recreated" in line]
    assert len(recreated) <= 4
    await backend.close()


@pytest.mark.timeout(60)
async def test_sigterm_hands_back_what_does_not_finish_in_the_grace_period(
    redis_server: RedisServer, pool: WorkerPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A gets SIGTERM during a 2 s call with a 0.2 s grace: it cancels the call, hands
    the entry back and exits 0; worker B takes it over at its next janitor round (1 s), long
    before the 4 s min_idle that a crash would need."""
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("PF_MARKS", str(marks))
    options = ("--min-idle", "4", "--grace", "0.2")
    first = await pool.start(MARKED, redis_server.url, *options)
    flow, registry = marked()
    backend = RedisBackend(redis_server.url)
    async with RemoteFlow(flow, backend, registry=registry) as remote:
        await remote.emit(msg(Item(n=3, sleep_s=2.0)), trace_id="handed")
        await until(lambda: _marked(marks, "start-3-"))
        await pool.start(MARKED, redis_server.url, *options)
        assert first.process is not None
        first.process.terminate()
        async with asyncio.timeout(3):
            status = await first.process.wait()
        exited = time.monotonic()
        await until(lambda: _count_marks(marks, "start-3-", 2), timeout=2.5)
        taken_over_after = time.monotonic() - exited
        answer = await remote.fetch(trace_id="handed")
    assert status == 0
    assert taken_over_after < 2.5
    assert answer.payload.n == 3
    assert len(list(marks.glob("cancelled-3-*"))) == 1
    await backend.close()


async def _count_marks(marks: Path, prefix: str, wanted: int) -> bool:
    return len(list(marks.glob(prefix + "*"))) >= wanted
