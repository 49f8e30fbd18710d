"""The in-process semantics, kept across Redis: a worker served from a task of the test
process (the fault tests use real worker processes)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from pydantic import BaseModel

from penguiflow import FinalAnswer, Message, Node, NodePolicy, StreamChunk, create
from penguiflow.distributed import (
    BackendUnavailable,
    EnvelopeError,
    EnvelopeTooLarge,
    RedisBackend,
    RemoteFlow,
    serve,
)
from penguiflow.errors import FlowError, TraceCancelled
from penguiflow.registry import ModelRegistry

from .helpers import msg, served, until
from .servers import RedisServer, free_port


class Num(BaseModel):
    n: int


class Unregistered(BaseModel):
    x: int


def _registry(*names: str) -> ModelRegistry:
    registry = ModelRegistry()
    for name in names:
        registry.register(name, Num, Num)
    return registry


async def test_results_retries_and_flow_errors_reach_the_caller(redis_server: RedisServer) -> None:
    calls: dict[int, int] = {}
    events: list[tuple[str, str | None]] = []

    async def flaky(message: Message, _ctx: Any) -> Message:
        n = message.payload.n
        calls[n] = calls.get(n, 0) + 1
        if n == 1 and calls[n] == 1:
            raise ValueError("first attempt fails")
        if n == 2:
            raise ValueError("always fails")
        return message.model_copy(update={"payload": Num(n=n * 10)})

    async def record(event: Any) -> None:
        events.append((event.event_type, event.trace_id))

    node = Node(
        flaky, name="flaky", policy=NodePolicy(validate="none", max_retries=1, backoff_base=0.001)
    )
    flow = create(node.to(), middlewares=[record])
    backend = RedisBackend(redis_server.url, flow_id="retries")
    async with served(flow, backend, registry=_registry("flaky")) as remote:
        await remote.emit(msg(Num(n=1)), trace_id="one")
        await remote.emit(msg(Num(n=2)), trace_id="two")
        one = await remote.fetch(trace_id="one")
        two = await remote.fetch(trace_id="two")
    assert one.payload == Num(n=10) and one.trace_id == "one"
    assert isinstance(two, FlowError)
    assert (two.code, two.node_name, two.trace_id) == ("NODE_EXCEPTION", "flaky", "two")
    assert "always fails" in two.message
    assert calls == {1: 2, 2: 2}
    assert ("node_retry", "one") in events and ("node_failed", "two") in events


async def test_timeouts_of_the_policy_apply_in_the_worker(redis_server: RedisServer) -> None:
    async def slow(message: Message, _ctx: Any) -> Message:
        await asyncio.sleep(5)
        return message

    node = Node(slow, name="slow", policy=NodePolicy(validate="none", timeout_s=0.05))
    flow = create(node.to())
    async with served(flow, RedisBackend(redis_server.url, flow_id="timeouts")) as remote:
        await remote.emit(msg("x"), trace_id="t")
        error = await remote.fetch(trace_id="t")
    assert isinstance(error, FlowError) and error.code == "NODE_TIMEOUT"


async def test_routing_to_a_chosen_successor_and_streamed_chunks(redis_server: RedisServer) -> None:
    """A router picks one successor with ``ctx.emit(to=...)``; a node streams chunks (one
    sent twice with the same seq, as a re-run would) and then answers."""

    async def route(message: Message, ctx: Any) -> None:
        await ctx.emit(message, to=speaker if message.payload == "speak" else silent)

    async def speak(message: Message, ctx: Any) -> Message:
        await ctx.emit_chunk(parent=message, text="a", seq=0)
        await ctx.emit_chunk(parent=message, text="a again", seq=0)
        await ctx.emit_chunk(parent=message, text="b", seq=1, done=True)
        return message.model_copy(update={"payload": FinalAnswer(text="spoken")})

    async def quiet(message: Message, _ctx: Any) -> Message:
        return message.model_copy(update={"payload": FinalAnswer(text="quiet")})

    policy = NodePolicy(validate="none")
    router = Node(route, name="router", policy=policy)
    speaker = Node(speak, name="speaker", policy=policy)
    silent = Node(quiet, name="silent", policy=policy)
    flow = create(router.to(speaker, silent), speaker.to(), silent.to())
    async with served(flow, RedisBackend(redis_server.url, flow_id="routing")) as remote:
        await remote.emit(msg("speak"), trace_id="s")
        got = [await remote.fetch(trace_id="s") for _ in range(3)]
        await remote.emit(msg("hush"), trace_id="h")
        hushed = await remote.fetch(trace_id="h")
    chunks = [each.payload for each in got[:2]]
    assert all(isinstance(each, StreamChunk) for each in chunks)
    assert [(c.seq, c.text) for c in chunks] == [(0, "a"), (1, "b")]
    assert got[2].payload == FinalAnswer(text="spoken")
    assert hushed.payload == FinalAnswer(text="quiet")


async def test_an_expired_deadline_is_answered_without_calling_the_node(
    redis_server: RedisServer,
) -> None:
    called: list[str] = []

    async def node_func(message: Message, _ctx: Any) -> Message:
        called.append(message.trace_id)
        return message

    flow = create(Node(node_func, name="late", policy=NodePolicy(validate="none")).to())
    async with served(flow, RedisBackend(redis_server.url, flow_id="deadline")) as remote:
        await remote.emit(msg("x", deadline_s=time.time() - 1), trace_id="late")
        answer = await remote.fetch(trace_id="late")
    assert answer.payload == FinalAnswer(text="Deadline exceeded")
    assert called == []


async def test_emit_refuses_undeclared_types_and_oversized_envelopes(
    redis_server: RedisServer,
) -> None:
    async def echo(message: Message, _ctx: Any) -> Message:
        return message

    flow = create(Node(echo, name="echo", policy=NodePolicy(validate="none")).to())
    backend = RedisBackend(redis_server.url, flow_id="refuse", max_envelope_bytes=400)
    async with RemoteFlow(flow, backend) as remote:
        with pytest.raises(EnvelopeError, match=r"Unregistered is not in the flow's registry"):
            await remote.emit(msg(Unregistered(x=1)))
        with pytest.raises(EnvelopeTooLarge, match=r"over the limit of 400 bytes"):
            await remote.emit(msg("x" * 1000))
        client = await backend.connect()
        assert await client.xlen(backend.keys.edge(None, "echo")) == 0
    await backend.close()


async def test_bad_entries_are_dead_lettered_and_can_be_redriven(
    redis_server: RedisServer,
) -> None:
    """Garbage and an oversized envelope found in a stream go to the dead-letter stream,
    with the reason naming the stream; the others run. Re-driven under a larger limit, the
    oversized one runs."""

    async def echo(message: Message, _ctx: Any) -> Message:
        return message

    flow = create(Node(echo, name="echo", policy=NodePolicy(validate="none")).to())
    small = RedisBackend(redis_server.url, flow_id="dlq", max_envelope_bytes=600)
    big = RedisBackend(redis_server.url, flow_id="dlq")
    ingress = small.keys.edge(None, "echo")
    async with RemoteFlow(flow, big) as caller:
        await caller.emit(msg("y" * 700), trace_id="big")
        client = await big.connect()
        await client.xadd(ingress, {"e": "not json"})
        async with served(flow, small) as remote:
            await remote.emit(msg("fine"), trace_id="fine")
            assert (await remote.fetch(trace_id="fine")).payload == "fine"
            await until(lambda: _count(small, "echo", 2))
        letters = await big.dead_letters("echo")
        reasons = sorted(letter.reason for letter in letters)
        assert "over the limit of 600 bytes" in reasons[0]
        assert "undecodable envelope" in reasons[1]
        assert all(letter.stream == ingress and letter.node == "echo" for letter in letters)
        oversized = next(each for each in letters if "limit" in each.reason)
        assert (await big.dead_letter("echo", oversized.id)) == oversized
        assert await big.redrive("echo", [oversized.id]) == 1
        async with served(flow, big):
            answer = await caller.fetch(trace_id="big")
        assert answer.payload == "y" * 700
        assert [each.id for each in await big.dead_letters("echo")] != [oversized.id]
    await big.close()


async def _count(backend: RedisBackend, node: str, wanted: int) -> bool:
    return len(await backend.dead_letters(node)) >= wanted


async def test_redis_down_or_a_wrong_url_fail_clearly_and_hide_the_password() -> None:
    port = free_port()
    flow = create(Node(_identity, name="n", policy=NodePolicy(validate="none")).to())
    backend = RedisBackend(f"redis://:s3cret@127.0.0.1:{port}/0")
    with pytest.raises(BackendUnavailable) as caught:
        await serve(flow, backend)
    assert f"127.0.0.1:{port}" in str(caught.value) and "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(backend) and "***" in backend.url
    with pytest.raises(BackendUnavailable):
        await RemoteFlow(flow, backend).start()
    with pytest.raises(ValueError, match="not a Redis URL: http://u:\\*\\*\\*@host"):
        await RemoteFlow(flow, RedisBackend("http://u:s3cret@host/0")).start()


async def _identity(message: Message, _ctx: Any) -> Message:
    return message


async def test_a_password_never_reaches_logs_or_events(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path, password="s3cret-pw")
    events: list[str] = []

    async def record(event: Any) -> None:
        events.append(repr(event.to_payload()))

    try:
        server.start()
        flow = create(
            Node(_identity, name="n", policy=NodePolicy(validate="none")).to(),
            middlewares=[record],
        )
        caplog.set_level(logging.DEBUG, logger="penguiflow")
        async with served(flow, RedisBackend(server.url, flow_id="pw")) as remote:
            await remote.emit(msg("x"), trace_id="t")
            assert (await remote.fetch(trace_id="t")).payload == "x"
        wrong = RedisBackend(server.url.replace("s3cret-pw", "wrong-pw"))
        with pytest.raises(BackendUnavailable) as caught:
            await RemoteFlow(flow, wrong).start()
    finally:
        server.kill()
    assert "wrong-pw" not in str(caught.value)
    assert events and not any("s3cret" in each for each in events)
    assert not any(
        "s3cret" in record.getMessage() + repr(record.__dict__) for record in caplog.records
    )


async def test_a_caller_that_never_reads_stops_only_its_own_traces(
    redis_server: RedisServer,
) -> None:
    """The lazy caller's emits wait once it holds two unread results (after those it had in
    flight land); the other caller's traces all finish meanwhile, on the same worker."""

    async def echo(message: Message, _ctx: Any) -> Message:
        return message

    flow = create(Node(echo, name="echo", policy=NodePolicy(validate="none")).to(), queue_maxsize=8)
    backend = RedisBackend(redis_server.url, flow_id="lazy", results_maxsize=2)
    async with served(flow, backend, concurrency=2) as reader, RemoteFlow(flow, backend) as lazy:
        emitter = asyncio.create_task(_emit_all(lazy, 30))
        await until(lambda: _stream_len(backend, lazy.results, 2))
        for i in range(10):
            await reader.emit(msg(i), trace_id=f"r{i}")
            assert (await reader.fetch(trace_id=f"r{i}")).payload == i
        assert not emitter.done()
        client = await backend.connect()
        # Its bound, plus what it had in flight when it reached it (the ingress bound and
        # the worker's two slots) at most.
        assert 2 <= await client.xlen(lazy.results) <= 2 + 8 + 2
        got = sorted([(await lazy.fetch()).payload for _ in range(30)])
        await emitter
    assert got == list(range(30))


async def _stream_len(backend: RedisBackend, stream: str, wanted: int) -> bool:
    client = await backend.connect()
    return int(await client.xlen(stream)) >= wanted


async def test_a_slow_consumer_bounds_the_stream_and_the_producer_waits(
    redis_server: RedisServer,
) -> None:
    release = asyncio.Event()
    seen: list[int] = []

    async def slow(message: Message, _ctx: Any) -> Message:
        await release.wait()
        seen.append(message.payload)
        return message

    flow = create(Node(slow, name="slow", policy=NodePolicy(validate="none")).to(), queue_maxsize=4)
    backend = RedisBackend(redis_server.url, flow_id="slow", results_maxsize=64)
    stream = backend.keys.edge(None, "slow")
    async with served(flow, backend, concurrency=1) as remote:
        producer = asyncio.create_task(_emit_all(remote, 20))
        client = await backend.connect()
        # One entry is with the worker (pending, still in the stream), four more fill it.
        await until(lambda: _stream_len(backend, stream, 4))
        depths = [int(await client.xlen(stream)) for _ in range(20)]
        assert not producer.done()  # the producer waits for room
        release.set()
        while not producer.done():
            depths.append(int(await client.xlen(stream)))
            await asyncio.sleep(0)
        await producer
        results = sorted([(await remote.fetch()).payload for _ in range(20)])
    assert max(depths) <= 4
    assert results == list(range(20))


async def _emit_all(remote: RemoteFlow, count: int) -> None:
    for i in range(count):
        await remote.emit(msg(i))


async def test_cancel_stops_the_running_call_and_drops_queued_entries(
    redis_server: RedisServer,
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def hang(message: Message, _ctx: Any) -> Message:
        if message.trace_id == "doomed":
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return message

    flow = create(Node(hang, name="hang", policy=NodePolicy(validate="none")).to())
    async with served(flow, RedisBackend(redis_server.url, flow_id="cancel")) as remote:
        await remote.emit(msg("x"), trace_id="doomed")
        await started.wait()
        waiter = asyncio.create_task(remote.fetch(trace_id="doomed"))
        await asyncio.sleep(0)
        assert await remote.cancel("doomed")
        async with asyncio.timeout(1):
            await cancelled.wait()
        with pytest.raises(TraceCancelled):
            await waiter
        await remote.emit(msg("later"), trace_id="doomed2")
        assert (await remote.fetch(trace_id="doomed2")).payload == "later"
        client = await remote.backend.connect()
        assert await client.xlen(remote.results) == 0
