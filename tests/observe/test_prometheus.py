"""``PrometheusMetrics``: event counters, latency histograms and scrape-time health gauges.

Each test runs a real flow with the metrics middleware followed by a ``Recorder``; the
runtime awaits middlewares in order, so once the recorder has seen an event, the metrics have
counted it. The registry is read back through ``prometheus_client``'s own text format and
parser. Breaker and timeout tests run under ``looptime`` (virtual time).
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
from typing import Any

import pytest
from core.helpers import Gate, Recorder, fetch, make_msg, node, running, within
from prometheus_client import CollectorRegistry, generate_latest

from penguiflow.core import PenguiFlow, create
from penguiflow.errors import FlowError
from penguiflow.node import BreakerPolicy
from penguiflow.observe import _health_collector
from penguiflow.observe.prometheus import PrometheusMetrics, serve_metrics

from .support import Samples, event, http_get, read


def observed(*adjacencies: Any, **kwargs: Any) -> tuple[PenguiFlow, PrometheusMetrics, Recorder]:
    """A flow with metrics (gauges included) and, after them, a recorder."""
    flow = create(*adjacencies, **kwargs)
    metrics, rec = PrometheusMetrics(flow), Recorder()
    flow.add_middleware(metrics)
    flow.add_middleware(rec)
    return flow, metrics, rec


class Flaky:
    """A node body that fails its first ``failures`` calls, then echoes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, msg: Any, ctx: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise ValueError(f"failure {self.calls}")
        return msg


async def test_a_served_flow_counts_a_retried_success() -> None:
    """A node fails its first attempt and succeeds on the retry; a real scrape of
    ``/metrics`` shows one error, one retry, one success and two latency observations, and
    ``/healthz`` answers ``ok`` while the flow runs."""
    flaky = node(Flaky(1).__call__, "flaky", max_retries=1, backoff_base=0.0)
    flow, metrics, rec = observed(flaky.to())
    async with running(flow), await serve_metrics(flow, metrics, port=0) as server:
        assert server.port > 0
        await flow.emit(make_msg("x", trace_id="t1"))
        assert (await fetch(flow)).payload == "x"
        await rec.wait_for("node_success", node_name="flaky")
        scraped = await http_get(server.port, "/metrics")
        health = await http_get(server.port, "/healthz")
    assert scraped.status == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=")
    samples = Samples(scraped.body.decode())
    outcome = "penguiflow_node_invocations_total"
    assert samples(outcome, node="flaky", outcome="success") == 1
    assert samples(outcome, node="flaky", outcome="error") == 1
    for other in ("timeout", "failed", "rejected", "cancelled"):
        assert samples(outcome, node="flaky", outcome=other) == 0
    assert samples("penguiflow_node_retries_total", node="flaky") == 1
    assert samples("penguiflow_node_latency_seconds_count", node="flaky") == 2
    assert samples("penguiflow_flow_running") == 1
    assert (health.status, health.headers["content-type"]) == (200, "application/json")
    body = json.loads(health.body)
    assert (body["status"], body["running"]) == ("ok", True)
    assert [n["name"] for n in body["nodes"]] == ["flaky"]
    assert {(f["source"], f["target"]) for f in body["floes"]} == {
        ("OpenSea", "flaky"),
        ("flaky", "Rookery"),
    }


@pytest.mark.looptime
async def test_final_failures_and_timeouts() -> None:
    """``boom`` always raises (no retries); ``slow`` times out twice (one retry)."""
    hang = asyncio.Event()

    async def boom(msg: Any, ctx: Any) -> Any:
        raise RuntimeError("boom")

    async def slow(msg: Any, ctx: Any) -> Any:
        await hang.wait()  # never set: every attempt times out
        return msg

    boom_node = node(boom, "boom")
    slow_node = node(slow, "slow", timeout_s=2.0, max_retries=1, backoff_base=1.0)
    flow, metrics, rec = observed(boom_node.to(), slow_node.to())
    async with running(flow):
        await flow.emit(make_msg(1, trace_id="a"), to=boom_node)
        await flow.emit(make_msg(2, trace_id="b"), to=slow_node)
        await rec.wait_for("node_failed", node_name="boom")
        await rec.wait_for("node_failed", node_name="slow")
    samples = read(metrics.registry)
    outcome = "penguiflow_node_invocations_total"
    assert samples(outcome, node="boom", outcome="error") == 1
    assert samples(outcome, node="boom", outcome="failed") == 1
    assert samples(outcome, node="slow", outcome="timeout") == 2
    assert samples(outcome, node="slow", outcome="failed") == 1
    assert samples("penguiflow_node_timeouts_total", node="slow") == 2
    assert samples("penguiflow_node_retries_total", node="slow") == 1
    assert samples("penguiflow_node_latency_seconds_count", node="slow") == 2


async def test_trace_cancellation_drop_and_deadline_skip() -> None:
    """``t1`` blocks in the node while ``t2``, whose deadline has passed, waits behind it.

    Cancelling ``t1`` stops the running invocation (outcome ``cancelled``); ``t2`` is then
    answered without running the node.
    """
    gate = Gate()

    async def gated(msg: Any, ctx: Any) -> Any:
        if msg.payload == "hold":
            await gate.pass_()
        return msg

    gated_node = node(gated, "gated")
    flow, metrics, rec = observed(gated_node.to())
    async with running(flow):
        await flow.emit(make_msg("hold", trace_id="t1"))
        await gate.wait_entered()
        await flow.emit(make_msg("late", trace_id="t2", deadline_s=1.0))
        assert await within(flow.cancel("t1"))
        await rec.wait_for("node_trace_cancelled", node_name="gated")
        await rec.wait_for("deadline_skip", node_name="gated")
        await fetch(flow)  # t2's deadline answer
    samples = read(metrics.registry)
    assert samples("penguiflow_trace_cancellations_total") == 1
    assert samples("penguiflow_node_invocations_total", node="gated", outcome="cancelled") == 1
    assert samples("penguiflow_deadline_skips_total", node="gated") == 1


@pytest.mark.looptime
async def test_breaker_transitions_rejections_and_state_gauge() -> None:
    async def down(msg: Any, ctx: Any) -> Any:
        raise RuntimeError("down")

    guarded = node(down, "svc", breaker=BreakerPolicy(failures=1, cooldown_s=10.0))
    flow, metrics, rec = observed(guarded.to(), emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(make_msg(1, trace_id="a"))
        assert (await fetch(flow)).code == "NODE_EXCEPTION"
        await flow.emit(make_msg(2, trace_id="b"))
        rejected = await fetch(flow)
        assert isinstance(rejected, FlowError) and rejected.code == "CIRCUIT_OPEN"
        await rec.wait_for("node_failed", count=2)
        samples = read(metrics.registry)
        assert samples("penguiflow_breaker_state", node="svc", state="open") == 1
        assert samples("penguiflow_breaker_state", node="svc", state="closed") == 0
        assert samples("penguiflow_flow_health", status="failing") == 1
        await asyncio.sleep(10.0)  # the cool-down, in virtual time
        await flow.emit(make_msg(3, trace_id="c"))
        await fetch(flow)  # the trial fails: open again
        await rec.wait_for("circuit_open", count=2)
    samples = read(metrics.registry)
    transitions = "penguiflow_breaker_transitions_total"
    assert samples(transitions, node="svc", state="open") == 2
    assert samples(transitions, node="svc", state="half_open") == 1
    assert samples("penguiflow_node_invocations_total", node="svc", outcome="failed") == 2
    assert samples("penguiflow_node_invocations_total", node="svc", outcome="rejected") == 1


async def test_gauges_are_read_from_health_at_scrape_time() -> None:
    """One item holds the node at a gate while two more wait on its ingress floe."""
    gate = Gate()

    async def gated(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    gated_node = node(gated, "gated")
    flow, metrics, _ = observed(gated_node.to(), queue_maxsize=4)
    before = read(metrics.registry)
    assert before("penguiflow_flow_running") == 0
    assert before("penguiflow_flow_health", status="failing") == 1
    async with running(flow):
        for i in range(3):
            await flow.emit(make_msg(i, trace_id=f"t{i}"))
        await gate.wait_entered()
        samples = read(metrics.registry)
        gate.open()
        for _ in range(3):
            await fetch(flow)
    assert samples("penguiflow_flow_running") == 1
    assert samples("penguiflow_flow_health", status="ok") == 1
    assert samples("penguiflow_traces_in_flight") == 3
    assert samples("penguiflow_floe_depth", source="OpenSea", target="gated") == 2
    assert samples("penguiflow_floe_capacity", source="OpenSea", target="gated") == 4
    assert samples("penguiflow_floe_depth", source="gated", target="Rookery") == 0
    assert samples("penguiflow_node_workers", node="gated") == 1
    assert samples("penguiflow_node_workers_alive", node="gated") == 1
    # No node has a breaker: the family is described but has no sample.
    assert not [key for key in samples.values if key[0] == "penguiflow_breaker_state"]


async def test_a_scrape_from_another_thread_reads_health_on_the_loop() -> None:
    """``generate_latest`` in a worker thread, as ``prometheus_client``'s own server runs it.

    The loop is free while the thread waits, so it takes the snapshot for the thread.
    """
    flow, metrics, _ = observed(node(Flaky(0).__call__, "echo").to())
    async with running(flow):
        text = await within(asyncio.to_thread(generate_latest, metrics.registry))
    samples = read(metrics.registry)
    assert b"penguiflow_flow_running 1.0" in text
    assert samples("penguiflow_flow_running") == 0


async def test_a_blocked_loop_costs_the_threaded_scrape_its_gauges_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The loop thread itself waits for a scraping thread, so it cannot take the snapshot:
    the scrape gives up after the (shortened) timeout, logs it, and still has the counters.
    The snapshot request left on the loop runs later (during ``stop()``) and does nothing."""
    monkeypatch.setattr(_health_collector, "SNAPSHOT_TIMEOUT_S", 0.05)
    flow, metrics, _ = observed(node(Flaky(0).__call__, "echo").to())
    texts: list[bytes] = []
    async with running(flow):
        with caplog.at_level(logging.WARNING, logger="penguiflow.observe"):
            scraper = threading.Thread(
                target=lambda: texts.append(generate_latest(metrics.registry))
            )
            scraper.start()
            scraper.join()  # blocks the loop on purpose
    [text] = texts
    samples = Samples(text.decode())
    assert "penguiflow_node_retries" in samples.families
    assert "penguiflow_flow_running" not in samples.families
    assert [r.message for r in caplog.records] == ["health_snapshot_unavailable"]


async def test_items_discarded_at_stop_are_counted() -> None:
    gate = Gate()

    async def gated(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    flow, metrics, _ = observed(node(gated, "gated").to())
    async with running(flow):
        for i in range(3):
            await flow.emit(make_msg(i, trace_id=f"t{i}"))
        await gate.wait_entered()
    assert read(metrics.registry)("penguiflow_floe_drained_items_total", node="gated") == 2


async def test_events_only_the_runtime_provokes() -> None:
    """A runtime fault restarting a worker, and a drop racing a cancel, cannot be provoked
    from outside; their events are built here as the runtime builds them."""
    metrics = PrometheusMetrics()
    for _ in range(2):
        await metrics(event("worker_restarted", "svc", exception="RuntimeError('fault')"))
    await metrics(event("trace_cancel_drop", "svc", trace_id="t1"))
    await metrics(event("node_start", "svc", trace_id="t1"))
    samples = read(metrics.registry)
    assert samples("penguiflow_worker_restarts_total", node="svc") == 2
    assert samples("penguiflow_trace_cancel_drops_total", node="svc") == 1
    # node_start counts nothing, so it creates no series.
    assert samples.get("penguiflow_node_invocations_total", node="svc", outcome="success") is None


def test_registries_and_namespaces() -> None:
    first, second = PrometheusMetrics(), PrometheusMetrics()
    assert first.registry is not second.registry  # private registries never clash
    shared = CollectorRegistry()
    PrometheusMetrics(create(), registry=shared, namespace="a")
    PrometheusMetrics(create(), registry=shared, namespace="b")
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusMetrics(registry=shared, namespace="a")
    names = read(shared).families
    assert {"a_node_invocations", "b_node_invocations", "a_flow_running"} <= names


def test_importing_penguiflow_needs_no_optional_dependency() -> None:
    code = (
        "import sys, penguiflow, penguiflow.observe\n"
        "loaded = {'prometheus_client', 'h11', 'opentelemetry'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
