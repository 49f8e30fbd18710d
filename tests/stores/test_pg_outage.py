"""PostgreSQL goes away under a running flow, for real: a TCP proxy between the store and the
server is cut (connections reset, new ones refused) or turned into a blackhole (connections
accepted, nothing answered), then restored.

While it is cut, ``flow.health()`` turns ``degraded`` and then ``failing``, naming the store
and the error; new traces are refused while failing; nothing written is lost: once the proxy
is restored the writer recovers by itself and every trace accepted before and during the
outage is in the database, finished, with all its events. With the server unreachable,
``stop()`` and ``close()`` return within their bounds, and ``GET /healthz`` of the metrics
server follows ``health()`` through it all. Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import traceback
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from core.helpers import echo, make_msg, node, within

from penguiflow.core import PenguiFlow
from penguiflow.stores import StoreFailingError, WritesAbandonedError

from .conftest import PG_DSN, postgres_connection
from .faults import Stopwatch, eventually
from .tcp_proxy import Outage, TcpProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from penguiflow.stores._base import Durability
    from penguiflow.stores.postgres import PostgresStore

FAILING_AFTER_S = 0.5
TIMEOUT_S = 1.0  # connect and command timeouts of the store under test
RECOVERY_S = 10.0  # the most a recovery may take once the proxy is restored


class Outpost:
    """A schema of the test database, reached directly and through a proxy."""

    def __init__(self, connection: Any, schema: str, proxy: TcpProxy) -> None:
        self.connection = connection
        self.schema = schema
        self.proxy = proxy
        database = urllib.parse.urlsplit(PG_DSN).path
        self.dsn = f"postgresql://postgres:s3cret-pw@{proxy.address}{database}"

    def store(
        self, failing_after_s: float = FAILING_AFTER_S, durability: Durability = "commit"
    ) -> PostgresStore:
        from penguiflow.stores.postgres import PostgresStore

        return PostgresStore(
            self.dsn,
            schema=self.schema,
            failing_after_s=failing_after_s,
            durability=durability,
            connect_timeout_s=TIMEOUT_S,
            command_timeout_s=TIMEOUT_S,
            retry_max_s=0.2,
        )

    async def traces(self) -> dict[str, str]:
        rows = await self.connection.fetch(f'SELECT trace_id, status FROM "{self.schema}".traces')
        return {row[0]: row[1] for row in rows}

    async def events_per_trace(self) -> dict[str, int]:
        rows = await self.connection.fetch(
            f'SELECT trace_id, count(*) FROM "{self.schema}".events GROUP BY trace_id'
        )
        return {row[0]: row[1] for row in rows}


@pytest.fixture
async def outpost() -> AsyncIterator[Outpost]:
    connection = await postgres_connection()  # skips, or fails when PostgreSQL is required
    server = urllib.parse.urlsplit(PG_DSN)
    proxy = TcpProxy(server.hostname or "127.0.0.1", server.port or 5432)
    await proxy.start()
    schema = f"pf_test_outage_{uuid.uuid4().hex}"
    try:
        yield Outpost(connection, schema, proxy)
    finally:
        await proxy.close()
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


def echo_flow(store: PostgresStore) -> PenguiFlow:
    return PenguiFlow(node(echo, "a").to(), state_store=store)


async def run_traces(flow: PenguiFlow, prefix: str, count: int) -> list[str]:
    """Emit ``count`` traces one after the other, fetching each result."""
    done = []
    for i in range(count):
        await flow.emit(make_msg(i, trace_id=f"{prefix}{i}"))
        assert (await within(flow.fetch(), 5.0)).payload == i
        done.append(f"{prefix}{i}")
    return done


async def run_traces_until_refused(
    flow: PenguiFlow, prefix: str, *, within_s: float
) -> tuple[list[str], RuntimeError]:
    """Emit traces (fetching each) until the flow refuses one; return those accepted."""
    clock = Stopwatch()
    accepted: list[str] = []
    for i in itertools.count():
        assert clock() < within_s, f"no trace refused within {within_s} s"
        try:
            await flow.emit(make_msg(i, trace_id=f"{prefix}{i}"))
        except RuntimeError as refused:
            return accepted, refused
        accepted.append(f"{prefix}{i}")
        assert (await within(flow.fetch(), 5.0)).payload == i
        await asyncio.sleep(0.02)  # pacing: a few dozen traces, not thousands
    raise AssertionError("unreachable")


async def outage_then_recovery(outpost: Outpost, outage: Outage) -> dict[str, float]:
    """The shared scenario; returns what it measured (seconds, counts).

    The store's durability is "queued", so that traces go through during the outage and the
    writer's backlog must be replayed whole once the server is back; with "commit", no
    trace would be acknowledged during the outage (the refused-server test checks that).
    """
    store = outpost.store(durability="queued")
    await store.start()
    flow = echo_flow(store)
    flow.run()
    measured: dict[str, float] = {}
    try:
        before = await run_traces(flow, "before-", 10)
        await store.flush(timeout_s=5.0)
        per_trace = await outpost.events_per_trace()
        assert set(per_trace) == set(before)
        (events_of_a_trace,) = set(per_trace.values())

        await outpost.proxy.cut(outage)
        clock = Stopwatch()
        during, refused = await run_traces_until_refused(flow, "during-", within_s=10.0)
        measured["failing_s"] = clock()
        assert during, "no trace was accepted during the outage"
        assert "is failing" in str(refused) and store.describe() in str(refused)
        health = flow.health()
        assert health.status == "failing" and health.store_status == "failing"
        assert health.store == f"{store.describe()}: {store.last_error!r}"
        assert health.traces_in_flight == 0  # the refused trace was not sent
        assert store.write_failures >= 1 and store.pending_writes > 0
        measured["pending_writes"] = store.pending_writes
        measured["rows_before_restore"] = len(await outpost.traces())

        await outpost.proxy.restore()
        clock = Stopwatch()
        await eventually(lambda: store.status == "ok", within_s=RECOVERY_S, what="recovered")
        measured["recovery_s"] = clock()
        assert flow.health().status == "ok" and flow.health().store == store.describe()
        after = await run_traces(flow, "after-", 3)  # traces are accepted and finish again
        await store.flush(timeout_s=5.0)
        traces = await outpost.traces()
        assert traces == dict.fromkeys(before + during + after, "finished")
        assert await outpost.events_per_trace() == dict.fromkeys(traces, events_of_a_trace)
        measured["traces_during_outage"] = len(during)
        measured["rows_after_restore"] = len(traces)
    finally:
        await flow.stop()
        await store.close(timeout_s=5.0)
    return measured


async def test_a_refused_server_fails_health_refuses_traces_and_loses_nothing(
    outpost: Outpost, record_property: Any
) -> None:
    clock = Stopwatch()
    store = outpost.store()
    await store.start()
    flow = echo_flow(store)
    flow.run()
    try:
        await run_traces(flow, "warm-", 1)
        await store.flush(timeout_s=5.0)
        await outpost.proxy.cut("refuse")
        cut = Stopwatch()
        # Its start cannot be committed: emit() waits, then raises once the store is failing,
        # and the trace is cancelled (nothing is acknowledged that a crash could lose).
        emitting = asyncio.create_task(flow.emit(make_msg("x", trace_id="first")))
        await eventually(lambda: store.status != "ok", within_s=5.0, what="degraded")
        assert not emitting.done()
        degraded_s = cut()
        health = flow.health()
        assert health.status == "degraded" and health.store_status == "degraded"
        assert health.store is not None and health.store.startswith(f"{store.describe()}: ")
        assert repr(store.last_error) in health.store
        await eventually(lambda: store.status == "failing", within_s=5.0, what="failing")
        failing_s = cut()
        assert FAILING_AFTER_S <= failing_s < FAILING_AFTER_S + 1.0
        with pytest.raises(StoreFailingError, match="is failing"):
            await within(emitting, 5.0)
        # While refused, the error names the server asyncpg could not reach.
        assert str(outpost.proxy.port) in (flow.health().store or "")
        with pytest.raises(RuntimeError, match="is failing"):
            await flow.emit(make_msg("y", trace_id="refused"))
        with pytest.raises(RuntimeError, match="is failing"):
            flow.emit_nowait(make_msg("y", trace_id="refused"))
        await outpost.proxy.restore()
        restored = Stopwatch()
        await eventually(lambda: store.status == "ok", within_s=RECOVERY_S, what="recovered")
        record_property("seconds", {"degraded": degraded_s, "failing": failing_s})
        record_property("recovery_s", restored())
        await run_traces(flow, "again-", 1)
    finally:
        await flow.stop()
        await store.close(timeout_s=5.0)
    assert await outpost.traces() == {
        "warm-0": "finished",
        "first": "cancelled",
        "again-0": "finished",
    }
    assert clock() < 15.0


@pytest.mark.parametrize("outage", ["refuse", "blackhole"])
async def test_every_trace_written_before_and_during_an_outage_is_kept(
    outpost: Outpost, outage: Outage, record_property: Any
) -> None:
    clock = Stopwatch()
    measured = await outage_then_recovery(outpost, outage)
    for name, value in measured.items():
        record_property(name, value)
    assert measured["rows_after_restore"] > measured["rows_before_restore"]
    assert clock() < 15.0


async def test_a_blackholed_server_times_out_naming_the_server_and_the_bound(
    outpost: Outpost,
) -> None:
    """Connections accepted, nothing answered: the commit fails after command_timeout_s,
    reconnecting after connect_timeout_s; both errors say which server and which bound."""
    store = outpost.store()
    await store.start()
    try:
        await store.save_trace_start("t", "{}", flow_key="k")
        await store.flush(timeout_s=5.0)
        await outpost.proxy.cut("blackhole")
        cut = Stopwatch()
        await store.save_trace_end("t", "finished")
        error = await eventually(lambda: store.last_error, within_s=5.0, what="a failed commit")
        assert TIMEOUT_S <= cut() < TIMEOUT_S + 1.0
        assert isinstance(error, TimeoutError)
        assert outpost.proxy.address in str(error) and "s3cret-pw" not in str(error)
        assert f"command_timeout_s={TIMEOUT_S}" in str(error)
        # The failed connection was dropped; the next attempt cannot even connect.
        await eventually(
            lambda: "connect_timeout_s" in str(store.last_error), within_s=5.0, what="reconnect"
        )
        assert outpost.proxy.address in str(store.last_error)
        await outpost.proxy.restore()
        await store.flush(timeout_s=RECOVERY_S)
        assert await outpost.traces() == {"t": "finished"}
    finally:
        await store.close(timeout_s=5.0)


@pytest.mark.parametrize("outage", ["refuse", "blackhole"])
async def test_stop_and_close_return_within_their_bounds_while_the_server_is_gone(
    outpost: Outpost, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    """close() cancels a commit stuck on a silent server and drops the pool's connections,
    whose polite close (asyncpg's pool.close()) would otherwise wait forever."""
    from penguiflow.stores.postgres import _POOL_CLOSE_TIMEOUT_S

    store = outpost.store(durability="queued")  # traces go through, their writes pile up
    await store.start()
    flow = echo_flow(store)
    flow.run()
    # A second pooled connection, idle when the outage begins.
    await asyncio.gather(*(store.list_traces() for _ in range(3)))
    await outpost.proxy.cut(outage)
    await run_traces(flow, "lost-", 3)
    await eventually(lambda: store.status != "ok", within_s=5.0, what="degraded")
    clock = Stopwatch()
    await within(flow.stop(), 10.0)
    assert 5.0 <= clock() < 6.0  # PenguiFlow.stop() gives the store 5 s to flush
    assert [r for r in caplog.records if r.getMessage() == "state_store_flush_timed_out"]
    pending = store.pending_writes
    clock = Stopwatch()
    with pytest.raises(WritesAbandonedError) as lost:
        await within(store.close(timeout_s=1.0), 10.0)
    assert clock() < 1.0 + _POOL_CLOSE_TIMEOUT_S + 0.5
    assert lost.value.count == pending > 0
    assert not store.opened


async def test_opening_names_the_server_when_it_refuses(outpost: Outpost) -> None:
    await outpost.proxy.cut("refuse")
    store = outpost.store()
    with pytest.raises(OSError) as raised:
        await within(store.start(), 5.0)
    shown = "".join(traceback.format_exception(raised.value))
    assert f"PostgreSQL at postgresql://postgres:***@{outpost.proxy.address}/" in shown
    assert "s3cret-pw" not in shown
    await store.close()


async def test_opening_names_the_server_when_it_rejects_the_login(outpost: Outpost) -> None:
    """The test server trusts every login, so an unknown role stands in for a bad password:
    both are PostgreSQL's refusals at login, which asyncpg reports without the server."""
    import asyncpg

    from penguiflow.stores.postgres import PostgresStore

    dsn = outpost.dsn.replace("postgres:s3cret-pw@", "pf-nobody:s3cret-pw@")
    store = PostgresStore(dsn, schema=outpost.schema, connect_timeout_s=TIMEOUT_S)
    with pytest.raises(asyncpg.PostgresError) as raised:
        await within(store.start(), 5.0)
    shown = "".join(traceback.format_exception(raised.value))
    assert "pf-nobody" in shown
    assert f"PostgreSQL at postgresql://pf-nobody:***@{outpost.proxy.address}/" in shown
    assert "s3cret-pw" not in shown
    await store.close()


async def test_healthz_follows_the_store_through_an_outage(outpost: Outpost) -> None:
    """``GET /healthz`` is ``flow.health()``: 200 while ok or degraded, 503 while failing."""
    from observe.support import http_get

    from penguiflow.observe import PrometheusMetrics, serve_metrics

    store = outpost.store(failing_after_s=1.0)  # a degraded spell long enough to see
    await store.start()
    flow = echo_flow(store)
    metrics = PrometheusMetrics(flow)
    flow.run()

    async def healthz_until(status: str) -> tuple[int, dict[str, Any]]:
        clock = Stopwatch()
        while True:
            reply = await http_get(server.port, "/healthz")
            body = json.loads(reply.body)
            if body["store_status"] == status:
                return reply.status, body
            assert clock() < 10.0, f"/healthz never reported the store {status}: {body}"
            await asyncio.sleep(0.01)

    try:
        async with await serve_metrics(flow, metrics, port=0) as server:
            code, body = await healthz_until("ok")
            assert code == 200 and body["status"] == "ok" and body["store"] == store.describe()
            await outpost.proxy.cut("refuse")
            # Something to commit: its emit() waits for the commit, and gives up once failing.
            emitting = asyncio.create_task(flow.emit(make_msg(0, trace_id="cut-0")))
            code, body = await healthz_until("degraded")
            assert code == 200 and body["status"] == "degraded"
            assert body["store"].startswith(f"{store.describe()}: ")
            code, body = await healthz_until("failing")
            assert code == 503 and body["status"] == "failing"
            assert body["store"].startswith(f"{store.describe()}: ")
            assert str(outpost.proxy.port) in body["store"]  # the refused address
            with pytest.raises(StoreFailingError):
                await within(emitting, 5.0)
            await outpost.proxy.restore()
            code, body = await healthz_until("ok")
            assert code == 200 and body["status"] == "ok" and body["store"] == store.describe()
    finally:
        await flow.stop()
        await store.close(timeout_s=5.0)
    assert await outpost.traces() == {"cut-0": "cancelled"}
