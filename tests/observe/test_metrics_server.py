"""``serve_metrics``: the HTTP side, against a real listener on 127.0.0.1 (port 0).

Clients are real too: urllib and ``http.client`` in a thread, or a raw asyncio connection
(writing the request's bytes itself) where the test must control the bytes or the timing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import logging
import threading
from typing import TYPE_CHECKING

import pytest
from core.helpers import TIMEOUT, echo, node, running, within

from penguiflow.core import PenguiFlow, create
from penguiflow.observe import MetricsServer, PrometheusMetrics, _server, serve_metrics

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
    for it, and leaves no connection task or thread behind (the leak checks verify)."""
    flow, metrics = echo_flow()
    server = await serve_metrics(flow, metrics, port=0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        status, _, _ = await within(exchange(reader, writer, GET_HEALTHZ))
        assert status.startswith("HTTP/1.1 503 ")
        await within(server.close())
        assert await within(reader.read()) == b""  # the server hung up
        await server.close()  # again: nothing to do
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_get_with_a_body_is_answered_then_the_connection_closes() -> None:
    """The server does not read request bodies, so it cannot reuse the connection."""
    flow, metrics = echo_flow()
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
    async with await serve_metrics(flow, metrics, port=0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            status, headers, _ = await within(exchange(reader, writer, request))
            rest = await within(reader.read())  # until the server closes
        finally:
            writer.close()
            await writer.wait_closed()
    assert status.startswith("HTTP/1.1 503 ")
    assert (headers["connection"], rest) == ("close", b"")


GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` as it is; read one response: status line, headers (names in lower
    case) and body."""
    writer.write(request)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status, *lines = head.split("\r\n")[:-2]
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def test_healthz_is_200_when_the_flow_is_degraded() -> None:
    class Degraded(PenguiFlow):
        def health(self) -> FlowHealth:
            return dataclasses.replace(super().health(), status="degraded")

    flow = Degraded(node(echo, "echo").to())
    async with await serve_metrics(flow, PrometheusMetrics(), port=0) as server:
        reply = await http_get(server.port, "/healthz")
    assert (reply.status, json.loads(reply.body)["status"]) == (200, "degraded")


async def test_a_blocked_loop_answers_503_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A first request opens a keep-alive connection while the loop is free. The loop thread
    then waits for a second request on it, so it cannot compute the answer: the connection's
    thread gives up after the (shortened) timeout and answers 503. The call it left queued
    on the loop runs afterwards and does nothing."""
    monkeypatch.setattr(_server, "ANSWER_TIMEOUT_S", 0.05)
    flow, metrics = echo_flow()

    def get(conn: http.client.HTTPConnection) -> tuple[int, bytes]:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        return response.status, response.read()

    replies: list[tuple[int, bytes]] = []
    async with running(flow), await serve_metrics(flow, metrics, port=0) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        try:
            replies.append(await within(asyncio.to_thread(get, conn)))
            with caplog.at_level(logging.WARNING, logger="penguiflow.observe"):
                client = threading.Thread(target=lambda: replies.append(get(conn)))
                client.start()
                client.join()  # blocks the loop on purpose
        finally:
            conn.close()
    assert [status for status, _ in replies] == [200, 503]
    assert replies[1][1] == b"event loop not responding\n"
    assert [r.message for r in caplog.records] == ["metrics_loop_unresponsive"]


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
