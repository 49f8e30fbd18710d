"""Observing a distributed flow: a worker's ``health()`` through a Redis outage, the flow's
``overview()`` read from Redis while real worker processes hold and lose entries, and a worker
process's ``/metrics`` and ``/healthz`` scraped over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import TYPE_CHECKING, Any

import pytest
from observe.support import Samples, http_get

from penguiflow import Message, Node, NodePolicy, create
from penguiflow.distributed import RedisBackend, RemoteFlow, Worker
from penguiflow.observe import serve_worker_metrics

from .flows import Item, chain
from .helpers import msg, until
from .servers import SECRET, WorkerPool, free_port

if TYPE_CHECKING:
    from penguiflow.distributed import WorkerHealth

    from .servers import RedisServer

CHAIN = "tests.distributed.flows:chain"


async def _identity(message: Message, _ctx: Any) -> Message:
    return message


def _echo_flow() -> Any:
    return create(Node(_identity, name="echo", policy=NodePolicy(validate="none")).to())


async def _settled(worker: Worker, acked: int) -> bool:
    """The caller gets its results a moment before the worker counts the commit's answer."""
    return all(node.acked >= acked for node in worker.health().nodes)


async def _health_when(worker: Worker, status: str) -> WorkerHealth:
    """The first snapshot of ``worker``'s health with ``status``."""
    found: list[WorkerHealth] = []

    async def check() -> bool:
        found.append(worker.health())
        return found[-1].status == status

    await until(check)
    return found[-1]


@pytest.mark.timeout(60)
async def test_worker_health_follows_a_redis_outage(secured_redis_server: RedisServer) -> None:
    """ok while serving; degraded (naming Redis) once Redis stops; failing once the heartbeat
    has lapsed for ``min_idle_s``; ok again once Redis is back. The password shows nowhere."""
    server = secured_redis_server
    flow = _echo_flow()
    backend = RedisBackend(server.url, flow_id="health", min_idle_s=2.0)
    worker = Worker(flow, backend, concurrency=3, consumer="w-health")
    before = worker.health()
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(worker.run(stop=stop, ready=started.set))
    snapshots: list[WorkerHealth] = []
    bodies: list[bytes] = []
    try:
        async with asyncio.timeout(10):
            await started.wait()
        async with await serve_worker_metrics(worker, port=0) as endpoint:
            async with RemoteFlow(flow, backend) as remote:
                for i in range(4):
                    await remote.emit(msg(i), trace_id=f"t{i}")
                    assert (await remote.fetch(trace_id=f"t{i}")).payload == i
            await until(lambda: _settled(worker, 4))
            snapshots.append(healthy := worker.health())
            listed = await backend.overview(flow)

            server.shutdown()
            snapshots.append(degraded := await _health_when(worker, "degraded"))
            degraded_reply = await http_get(endpoint.port, "/healthz")
            degraded_metrics = await http_get(endpoint.port, "/metrics")

            snapshots.append(failing := await _health_when(worker, "failing"))
            failing_reply = await http_get(endpoint.port, "/healthz")

            server.start()
            snapshots.append(recovered := await _health_when(worker, "ok"))
            ok_metrics = await http_get(endpoint.port, "/metrics")
            bodies += [degraded_reply.body, degraded_metrics.body, failing_reply.body]
            bodies.append(ok_metrics.body)
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task
    after = worker.health()
    left = await backend.overview(flow)
    with pytest.raises(RuntimeError, match="w-health has run already"):
        await worker.run()
    await backend.close()

    assert (before.status, before.reasons, before.running) == ("failing", ("not running",), False)
    assert (healthy.status, healthy.reasons, healthy.running) == ("ok", (), True)
    assert (healthy.consumer, healthy.host, healthy.pid) == (
        "w-health",
        socket.gethostname(),
        os.getpid(),
    )
    assert healthy.heartbeat_at is not None and healthy.redis.connected
    [echo] = healthy.nodes
    counts = (echo.concurrency, echo.in_flight, echo.held, echo.consumed, echo.acked, echo.failed)
    assert (echo.name, *counts) == ("echo", 3, 0, 0, 4, 4, 0)
    assert (echo.dead_lettered, echo.taken_over, echo.fenced) == (0, 0, 0)
    assert [(w.name, w.alive, w.nodes) for w in listed.workers] == [("w-health", True, ("echo",))]

    assert degraded.status == "degraded" and len(degraded.reasons) == 1
    assert degraded.reasons[0].startswith(f"redis at redis://:***@127.0.0.1:{server.port}/0")
    assert not degraded.redis.connected and degraded.redis.down_since is not None
    assert degraded.redis.last_error is not None
    assert degraded_reply.status == 200
    assert json.loads(degraded_reply.body)["redis"]["connected"] is False
    scraped = Samples(degraded_metrics.body.decode())
    assert scraped("penguiflow_worker_redis_connected") == 0
    assert scraped("penguiflow_worker_health", status="degraded") == 1
    assert scraped("penguiflow_node_invocations_total", node="echo", outcome="success") == 4

    assert failing.status == "failing" and "no heartbeat written" in failing.reasons[0]
    assert "redis at" in failing.reasons[1]
    assert failing_reply.status == 503

    assert (recovered.reasons, recovered.redis.connected) == ((), True)
    assert recovered.redis.reconnects >= 1 and recovered.redis.down_since is None
    assert Samples(ok_metrics.body.decode())("penguiflow_worker_redis_reconnects_total") >= 1

    assert (after.status, after.reasons, after.running) == ("failing", ("not running",), False)
    assert after.nodes[0].acked == 4
    assert left.workers == ()  # a graceful stop leaves the worker set
    for shown in [*map(repr, snapshots), *map(repr, bodies)]:
        assert SECRET not in shown


async def _pending(backend: RedisBackend, flow: Any, wanted: int) -> bool:
    return (await backend.overview(flow)).stream(None, "first").pending == wanted


async def _dead(backend: RedisBackend, name: str) -> bool:
    return not (await backend.overview()).worker(name).alive


@pytest.mark.timeout(60)
async def test_overview_of_two_worker_processes_and_one_killed(
    redis_server: RedisServer, pool: WorkerPool
) -> None:
    """Worker A serves ``first`` one call at a time, each 30 s long: of six messages it holds
    two (one running, one read ahead), four wait in the stream. Worker B serves ``second``,
    which gets nothing yet. Killed with SIGKILL, A turns not alive once its heartbeat expires
    (``min_idle_s`` = 1 s), and its two entries stay pending, for a take-over."""
    url = redis_server.url
    first = await pool.start(
        CHAIN,
        url,
        "--nodes",
        "first",
        "--concurrency",
        "1",
        "--min-idle",
        "1",
        "--consumer",
        "obs-a",
    )
    await pool.start(CHAIN, url, "--nodes", "second", "--min-idle", "1", "--consumer", "obs-b")
    flow, registry = chain()
    backend = RedisBackend(url, min_idle_s=1.0)
    client = await backend.connect()
    await client.xadd(backend.keys.dead_letters("second"), {"reason": "r", "e": "{}"})
    async with RemoteFlow(flow, backend, registry=registry) as remote:
        for i in range(6):
            await remote.emit(msg(Item(n=i, sleep_s=30.0)))
        await until(lambda: _pending(backend, flow, 2))
        held = await backend.overview(flow)
        found = await backend.overview()  # without the flow: the streams found in Redis
        first.kill()
        await until(lambda: _dead(backend, "obs-a"))
        lost = await backend.overview(flow)
    await backend.close()

    ingress, middle = held.stream(None, "first"), held.stream("first", "second")
    assert (ingress.depth, ingress.pending, ingress.lag) == (6, 2, 4)
    assert ingress.oldest_pending_id is not None and ingress.oldest_pending_idle_s is not None
    assert [(c.name, c.pending, c.alive) for c in ingress.consumers] == [("obs-a", 2, True)]
    assert (middle.depth, middle.pending, middle.lag, middle.oldest_pending_id) == (0, 0, 0, None)
    # Redis 7.0 lists a consumer only once a read has returned it an entry.
    assert [(c.name, c.pending) for c in middle.consumers] in ([], [("obs-b", 0)])
    assert held.dead_letters == {"first": 0, "second": 1}
    assert [(w.name, w.nodes, w.alive) for w in held.workers] == [
        ("obs-a", ("first",), True),
        ("obs-b", ("second",), True),
    ]
    assert held.worker("obs-a").concurrency == {"first": 1}
    assert held.worker("obs-a").host == socket.gethostname()
    assert [(s.source, s.target, s.depth) for s in found.streams] == [
        (None, "first", 6),
        ("first", "second", 0),
    ]
    assert found.dead_letters == held.dead_letters

    gone = lost.stream(None, "first")
    assert (gone.depth, gone.pending) == (6, 2)
    assert [(c.name, c.pending, c.alive) for c in gone.consumers] == [("obs-a", 2, False)]
    assert [(w.name, w.alive) for w in lost.workers] == [("obs-a", False), ("obs-b", True)]
    assert lost.worker("obs-a").heartbeat_age_s >= 1.0


async def _scrape(port: int) -> Samples:
    return Samples((await http_get(port, "/metrics")).body.decode())


async def _acked(port: int, wanted: int) -> bool:
    samples = await _scrape(port)
    return all(
        samples.get("penguiflow_worker_entries_acked_total", node=node) == wanted
        for node in ("first", "second")
    )


@pytest.mark.timeout(60)
async def test_a_worker_process_serves_its_metrics_and_health(
    secured_redis_server: RedisServer, pool: WorkerPool
) -> None:
    """``penguiflow worker --metrics-port``: after five messages through both nodes, its
    counters say five, its gauges say idle and connected, and no sample shows the password."""
    port = free_port()
    url = secured_redis_server.url
    worker = await pool.start(CHAIN, url, "--metrics-port", str(port), "--consumer", "obs-m")
    flow, registry = chain()
    backend = RedisBackend(url)
    async with RemoteFlow(flow, backend, registry=registry) as remote:
        for i in range(5):
            await remote.emit(msg(Item(n=i)))
        assert sorted([(await remote.fetch()).payload.n for _ in range(5)]) == [
            1001,
            1002,
            1003,
            1004,
            1005,
        ]
    await backend.close()
    await until(lambda: _acked(port, 5))
    metrics = await http_get(port, "/metrics")
    health = await http_get(port, "/healthz")

    ready = next(line for line in worker.lines if "worker ready" in line)
    assert f"consumer=obs-m metrics=http://127.0.0.1:{port}" in ready
    samples = Samples(metrics.body.decode())
    for node in ("first", "second"):
        assert samples("penguiflow_worker_entries_consumed_total", node=node) == 5
        assert samples("penguiflow_worker_entries_dead_lettered_total", node=node) == 0
        assert samples("penguiflow_worker_entries_taken_over_total", node=node) == 0
        assert samples("penguiflow_worker_in_flight", node=node) == 0
        assert samples("penguiflow_node_invocations_total", node=node, outcome="success") == 5
    assert samples("penguiflow_worker_running") == 1
    assert samples("penguiflow_worker_redis_connected") == 1
    assert samples("penguiflow_worker_health", status="ok") == 1
    assert SECRET not in metrics.body.decode() and SECRET not in health.body.decode()
    report = json.loads(health.body)
    assert (health.status, report["status"], report["consumer"]) == (200, "ok", "obs-m")
    assert [node["name"] for node in report["nodes"]] == ["first", "second"]


async def test_overview_before_any_worker_and_lookups_that_miss(redis_server: RedisServer) -> None:
    flow, _registry = chain()
    backend = RedisBackend(redis_server.url, flow_id="empty")
    overview = await backend.overview(flow)
    discovered = await backend.overview()
    await backend.close()
    assert [(s.source, s.target, s.depth, s.pending, s.lag) for s in overview.streams] == [
        (None, "first", 0, 0, 0),
        ("first", "second", 0, 0, 0),
    ]
    assert all(s.consumers == () for s in overview.streams)
    assert (overview.workers, overview.dead_letters) == ((), {"first": 0, "second": 0})
    assert (discovered.streams, discovered.workers, discovered.dead_letters) == ((), (), {})
    with pytest.raises(KeyError, match="no edge 'second' -> 'first' in flow empty"):
        overview.stream("second", "first")
    with pytest.raises(KeyError, match="no worker 'w' in flow empty; known: \\[\\]"):
        overview.worker("w")


def test_a_worker_refuses_unknown_nodes_and_errors_hide_the_password() -> None:
    flow, _registry = chain()
    backend = RedisBackend("redis://user:p%40ss@127.0.0.1:1/0")
    with pytest.raises(KeyError, match="no node named \\['third'\\]"):
        Worker(flow, backend, nodes=["third"])
    assert backend.scrub("auth p%40ss then p@ss failed") == "auth *** then *** failed"
    assert RedisBackend("redis://127.0.0.1:1/0").scrub("nothing to hide") == "nothing to hide"
