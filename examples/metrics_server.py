"""Prometheus metrics and a health endpoint for a running flow.

    OpenSea -> quote -> Rookery        (quote fails its first call, then recovers on retry)

``PrometheusMetrics`` is a middleware that counts node events (outcomes, retries, latency...)
and, given the flow, reads queue depths and health at scrape time. ``serve_metrics`` exposes
``GET /metrics`` for Prometheus and ``GET /healthz`` for liveness/readiness probes. ``main()``
answers a few requests, then scrapes its own endpoint as Prometheus would.

Run it with ``python examples/metrics_server.py`` (``pip install
'penguiflow-runtime[prometheus]'``).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from penguiflow import Headers, Message, Node, NodePolicy, PenguiFlow, create
from penguiflow.observe import PrometheusMetrics, serve_metrics

PRICES = {"PNGU": 42.0, "FLIP": 7.5, "ICE": 1.25}


def build() -> PenguiFlow:
    calls = 0

    async def quote(msg: Message, ctx: Any) -> Message:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("price feed hiccup")  # retried once, then fine
        return msg.model_copy(update={"payload": PRICES[msg.payload]})

    policy = NodePolicy(validate="none", max_retries=2, backoff_base=0.01)
    quote_node = Node(quote, name="quote", policy=policy)
    return create(quote_node.to())


def http_get(url: str) -> tuple[int, str]:
    """A plain GET that ignores proxy settings: the endpoint is on loopback."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.status, response.read().decode()


async def main(port: int = 0) -> dict[str, Any]:
    flow = build()
    metrics = PrometheusMetrics(flow)  # flow given: queue and health gauges too
    flow.add_middleware(metrics)
    flow.run()
    try:
        async with await serve_metrics(flow, metrics, port=port) as server:
            base = f"http://127.0.0.1:{server.port}"
            for symbol in PRICES:
                await flow.emit(Message(payload=symbol, headers=Headers(tenant="desk")))
                await flow.fetch()
            _, text = await asyncio.to_thread(http_get, f"{base}/metrics")
            status, health = await asyncio.to_thread(http_get, f"{base}/healthz")
    finally:
        await flow.stop()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    outcome = "penguiflow_node_invocations_total"
    result = {
        "successes": value(outcome, node="quote", outcome="success"),
        "errors": value(outcome, node="quote", outcome="error"),
        "retries": value("penguiflow_node_retries_total", node="quote"),
        "latency_count": value("penguiflow_node_latency_seconds_count", node="quote"),
        "ingress_depth": value("penguiflow_floe_depth", source="OpenSea", target="quote"),
        "health_status": status,
        "health": json.loads(health)["status"],
    }
    for key, number in result.items():
        print(f"{key:>14}: {number}")
    return result


if __name__ == "__main__":
    asyncio.run(main())
