"""``serve_metrics``: the HTTP side, against a real listener on 127.0.0.1 (port 0).

Clients are real too: urllib and ``http.client`` in a thread, or a raw asyncio connection
(speaking HTTP through an h11 client) where the test must control the bytes or the timing.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
from typing import TYPE_CHECKING

import h11
import pytest
from core.helpers import TIMEOUT, echo, node, running, within

from penguiflow.core import PenguiFlow, create
from penguiflow.observe import MetricsServer, PrometheusMetrics, serve_metrics

from .support import http_get

if TYPE_CHECKING:
    from penguiflow.health import FlowHealth


def echo_flow() -> tuple[PenguiFlow, PrometheusMetrics]:
    flow = create(node(echo, "echo").to())
    metrics = PrometheusMetrics(flow)
    flow.add_middleware(metrics)
    return flow, metrics


async def test_paths_methods_and_formats() -> None:
    flow, metrics = echo_flow()
    async with running(flow), await serve_metrics(flow, metrics, port=0) as server:
        missing = await http_get(server.port, "/nope")
        posted = await http_get(server.port, "/metrics", method="POST")
        head = await http_get(server.port, "/healthz", method="HEAD")
        query = await http_get(server.port, "/metrics?debug=1")
        openmetrics = await http_get(
            server.port, "/metrics", accept="application/openmetrics-text; version=1.0.0"
        )
    assert missing.status == 404
    assert (posted.status, posted.headers["allow"]) == (405, "GET")
    assert head.status == 405
    assert query.status == 200 and b"penguiflow_flow_running 1.0" in query.body
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.body.endswith(b"# EOF\n")


async def test_healthz_is_503_when_the_flow_is_not_running() -> None:
    flow, metrics = echo_flow()
    async with await serve_metrics(flow, metrics, port=0) as server:
        before = await http_get(server.port, "/healthz")
        async with running(flow):
            during = await http_get(server.port, "/healthz")
        after = await http_get(server.port, "/healthz")
    assert [before.status, during.status, after.status] == [503, 200, 503]
    assert [json.loads(r.body)["status"] for r in (before, during, after)] == [
        "failing",
        "ok",
        "failing",
    ]


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    flow, metrics = echo_flow()

    def two_requests(port: int) -> list[tuple[int, bool]]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        try:
            answers = []
            first_socket = None
            for path in ("/metrics", "/healthz"):
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                first_socket = first_socket or conn.sock
                answers.append((response.status, conn.sock is first_socket))
            return answers
        finally:
            conn.close()

    async with running(flow), await serve_metrics(flow, metrics, port=0) as server:
        answers = await within(asyncio.to_thread(two_requests, server.port))
    assert answers == [(200, True), (200, True)]


async def test_a_malformed_request_gets_400_and_the_connection_closes() -> None:
    flow, metrics = echo_flow()
    async with await serve_metrics(flow, metrics, port=0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            answer = await within(reader.read())  # until the server closes
        finally:
            writer.close()
            await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_close_ends_idle_keep_alive_connections() -> None:
    """A client gets one answer and keeps the connection open; ``close()`` must not wait
    for it, and leaves no connection task behind (the leak check verifies)."""
    flow, metrics = echo_flow()
    server = await serve_metrics(flow, metrics, port=0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        client = h11.Connection(h11.CLIENT)
        response = await within(exchange(client, reader, writer, "/healthz"))
        assert response.status_code == 503
        await within(server.close())
        assert await within(reader.read()) == b""  # the server hung up
        await server.close()  # again: nothing to do
    finally:
        writer.close()
        await writer.wait_closed()


async def exchange(
    client: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> h11.Response:
    """Send a GET with the h11 client and read the whole response."""
    request = h11.Request(method="GET", target=path, headers=[("host", "127.0.0.1")])
    for event in (request, h11.EndOfMessage()):
        data = client.send(event)
        assert data is not None
        writer.write(data)
    response = None
    while True:
        got = client.next_event()
        if got is h11.NEED_DATA:
            client.receive_data(await reader.read(65536))
        elif isinstance(got, h11.Response):
            response = got
        elif isinstance(got, h11.EndOfMessage):
            assert response is not None
            return response


async def test_a_failing_answer_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    class Unhealthy(PenguiFlow):
        def health(self) -> FlowHealth:
            raise RuntimeError("health is broken")

    flow = Unhealthy(node(echo, "echo").to())
    metrics = PrometheusMetrics()
    async with await serve_metrics(flow, metrics, port=0) as server:
        with caplog.at_level(logging.ERROR, logger="penguiflow.observe"):
            reply = await http_get(server.port, "/healthz")
            scraped = await http_get(server.port, "/metrics")
    assert reply.status == 500
    assert scraped.status == 200  # no flow given to the metrics: no health gauges to fail
    assert [r.message for r in caplog.records] == ["metrics_request_failed"]


async def test_a_taken_port_raises_oserror() -> None:
    flow, metrics = echo_flow()
    async with await serve_metrics(flow, metrics, port=0) as server:
        assert isinstance(server, MetricsServer) and server.host == "127.0.0.1"
        with pytest.raises(OSError):
            await serve_metrics(flow, metrics, port=server.port)
