"""The page's JSON API, called in-process (httpx over ASGI) against a real running flow.

Nodes hold items behind ``Gate``s, so "in flight" and "queued" are states the test puts the
flow in, not moments it hopes to catch; ``Seen`` wakes the test when an event has reached
the page's recorder.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest
from core.helpers import echo, node, running, within

from penguiflow.core import create
from penguiflow.stores import SQLiteStore
from penguiflow.web import create_app

from .support import Gate, Seen, asgi_client, gated_flow, msg

if TYPE_CHECKING:
    from pathlib import Path


async def test_graph_lists_nodes_endpoints_and_edges() -> None:
    flow = gated_flow(Gate())
    app = create_app(flow)
    async with asgi_client(app) as client:
        body = (await client.get("/api/graph")).json()
    kinds = {n["name"]: n["kind"] for n in body["nodes"]}
    assert kinds == {
        "prepare": "node",
        "answer": "node",
        "OpenSea": "endpoint",
        "Rookery": "endpoint",
    }
    edges = {(e["source"], e["target"]) for e in body["edges"]}
    assert edges == {("OpenSea", "prepare"), ("prepare", "answer"), ("answer", "Rookery")}
    assert body["control"] is False
    assert body["traces"]["source"] == "memory"
    assert any("restart" in note for note in body["traces"]["notes"])


async def test_stats_show_queue_in_flight_and_counts_from_the_live_flow() -> None:
    """One worker holds the first item; two more wait in its floe; then all go through."""
    gate = Gate()
    flow = gated_flow(gate)
    app = create_app(flow)
    seen = Seen()
    flow.add_middleware(seen)
    async with running(flow), asgi_client(app) as client:
        for index in range(3):
            await flow.emit(msg(f"hold {index}", f"t{index}"))
        await within(gate.entered.wait())
        held = (await client.get("/api/stats")).json()
        assert flow.active_traces() == ["t0", "t1", "t2"]
        gate.open.set()
        for index in range(3):
            await within(flow.fetch(trace_id=f"t{index}"))
        await seen.wait_for("node_success", count=6)
        done = (await client.get("/api/stats")).json()
        assert flow.active_traces() == []
    prepare = held["nodes"]["prepare"]
    assert (prepare["in_flight"], prepare["queue_depth"], prepare["queue_capacity"]) == (1, 2, 64)
    assert (prepare["workers"], prepare["workers_alive"], prepare["breaker"]) == (1, 1, None)
    assert held["health"]["status"] == "ok" and held["health"]["traces_in_flight"] == 3
    assert done["nodes"]["prepare"]["in_flight"] == 0
    assert done["nodes"]["prepare"]["succeeded"] == 3
    assert done["nodes"]["answer"]["succeeded"] == 3
    assert done["health"]["traces_in_flight"] == 0


async def test_memory_traces_have_status_and_timeline() -> None:
    gate = Gate()
    flow = gated_flow(gate)
    app = create_app(flow)
    seen = Seen()
    flow.add_middleware(seen)
    async with running(flow), asgi_client(app) as client:
        await flow.emit(msg("fine", "ok-1"))
        await within(flow.fetch(trace_id="ok-1"))
        await flow.emit(msg("fail now", "bad-1"))
        await seen.wait_for("node_failed", "bad-1")
        await flow.emit(msg("hold on", "held-1"))
        await within(gate.entered.wait())
        listing = (await client.get("/api/traces")).json()
        timeline = (await client.get("/api/traces/ok-1")).json()
        failed = (await client.get("/api/traces/bad-1")).json()
        missing = await client.get("/api/traces/never")
        gate.open.set()
        await within(flow.fetch(trace_id="held-1"))
    statuses = {t["trace_id"]: t["status"] for t in listing["traces"]}
    assert statuses == {"ok-1": "finished", "bad-1": "failed", "held-1": "running"}
    assert listing["traces"][0]["trace_id"] == "held-1"  # newest first
    assert listing["source"] == "memory"
    kinds = [(e["node"], e["kind"]) for e in timeline["events"]]
    assert kinds == [
        ("prepare", "node_start"),
        ("prepare", "node_success"),
        ("answer", "node_start"),
        ("answer", "node_success"),
    ]
    assert timeline["input"] is None and timeline["status"] == "finished"
    assert failed["status"] == "failed"
    error = next(e for e in failed["events"] if e["kind"] == "node_failed")
    assert "cannot handle fail now" in error["detail"]
    assert missing.status_code == 404


async def test_memory_keeps_only_the_latest_traces() -> None:
    flow = create(node(echo, "echo").to())
    app = create_app(flow, max_traces=2)
    async with running(flow), asgi_client(app) as client:
        for index in range(4):
            await flow.emit(msg("x", f"t{index}"))
            await within(flow.fetch(trace_id=f"t{index}"))
        listing = (await client.get("/api/traces")).json()
        forgotten = await client.get("/api/traces/t0")
    assert [t["trace_id"] for t in listing["traces"]] == ["t3", "t2"]
    assert forgotten.status_code == 404
    assert any("At most 2 traces" in note for note in listing["notes"])


@pytest.mark.parametrize("limit", ["0", "101", "x", "-1"])
async def test_a_bad_limit_is_refused(limit: str) -> None:
    app = create_app(create(node(echo, "echo").to()))
    async with asgi_client(app) as client:
        response = await client.get(f"/api/traces?limit={limit}")
    assert response.status_code == 400
    assert "limit must be an integer from 1 to 100" in response.json()["error"]


async def test_store_traces_show_input_and_history(tmp_path: Path) -> None:
    """A real SQLite file: the flow writes to it, the page reads traces and history back."""
    async with SQLiteStore(tmp_path / "flow.db") as store:
        flow = gated_flow(Gate(), state_store=store)
        app = create_app(flow, store=store, redact=lambda text: text.replace("hunter2", "***"))
        async with running(flow), asgi_client(app) as client:
            await flow.emit(msg("password hunter2", "s-1"))
            await within(flow.fetch(trace_id="s-1"))
            await store.flush()
            listing = (await client.get("/api/traces")).json()
            timeline = (await client.get("/api/traces/s-1")).json()
            missing = await client.get("/api/traces/none-such")
            health = (await client.get("/healthz")).json()
    assert health["store"] == f"SQLiteStore('{tmp_path / 'flow.db'}')"
    assert health["store_status"] == "ok"
    assert listing["source"] == "store"
    assert "SQLiteStore" in listing["notes"][0]
    (trace,) = listing["traces"]
    assert (trace["trace_id"], trace["status"]) == ("s-1", "finished")
    assert "password ***" in trace["input"] and "hunter2" not in json.dumps(listing)
    assert timeline["status"] == "finished" and "password ***" in timeline["input"]
    assert [e["kind"] for e in timeline["events"]].count("node_success") == 2
    assert missing.status_code == 404


async def test_a_failing_store_read_answers_503(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path / "closed.db")
    await store.start()
    await store.close()
    app = create_app(create(node(echo, "echo").to()), store=store)
    with caplog.at_level(logging.ERROR, "penguiflow.web"):
        async with asgi_client(app) as client:
            listing = await client.get("/api/traces")
            timeline = await client.get("/api/traces/x")
    assert (listing.status_code, timeline.status_code) == (503, 503)
    assert listing.json()["error"] == "the traces could not be read: StoreClosedError"
    assert [r.message for r in caplog.records].count("web_store_read_failed") == 2


async def test_healthz_and_metrics() -> None:
    flow = create(node(echo, "echo").to())
    app = create_app(flow)
    async with asgi_client(app) as client:
        stopped = await client.get("/healthz")
        async with running(flow):
            await flow.emit(msg("x", "m-1"))
            await within(flow.fetch(trace_id="m-1"))
            health = await client.get("/healthz")
            metrics = await client.get("/metrics")
    assert stopped.status_code == 503 and stopped.json()["running"] is False
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["nodes"][0]["in_flight"] == 0
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'penguiflow_node_invocations_total{node="echo",outcome="success"} 1.0' in metrics.text
    assert "penguiflow_flow_running 1.0" in metrics.text


async def test_a_given_metrics_middleware_is_the_one_exposed() -> None:
    from penguiflow.observe import PrometheusMetrics

    flow = create(node(echo, "echo").to())
    metrics = PrometheusMetrics(flow, namespace="mine")
    flow.add_middleware(metrics)
    app = create_app(flow, metrics=metrics)
    async with asgi_client(app) as client:
        text = (await client.get("/metrics")).text
    assert "mine_flow_running 0.0" in text and "penguiflow_" not in text


async def test_page_and_assets_are_served_with_their_types() -> None:
    app = create_app(create(node(echo, "echo").to()))
    async with asgi_client(app) as client:
        page = await client.get("/")
        script = await client.get("/app.js")
        style = await client.get("/style.css")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="/app.js" defer></script>' in page.text
    assert "<script>" not in page.text  # no inline script: the policy forbids it
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text and "textContent" in script.text
    assert style.headers["content-type"].startswith("text/css")


async def test_stream_is_refused_nothing_but_get() -> None:
    app = create_app(create(node(echo, "echo").to()))
    async with asgi_client(app) as client:
        response = await client.post("/api/events")
    assert response.status_code == 405


async def test_active_traces_lists_what_is_pending() -> None:
    gate = Gate()
    flow = gated_flow(gate)
    assert flow.active_traces() == []
    async with running(flow):
        await flow.emit(msg("hold", "a"))
        await flow.emit(msg("pass", "b"))
        await within(gate.entered.wait())
        assert flow.active_traces() == ["a", "b"]
        assert [n.in_flight for n in flow.health().nodes] == [1, 0]
        gate.open.set()
        await within(flow.fetch(trace_id="a"))
        await within(flow.fetch(trace_id="b"))
        assert flow.active_traces() == []
