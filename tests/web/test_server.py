"""``serve_flow`` under a real uvicorn on 127.0.0.1 (port 0), and the event stream over TCP."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from core.helpers import TIMEOUT, echo, node, running, within

from penguiflow.core import create
from penguiflow.web import serve_flow

from .support import msg, tcp_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx


async def stats_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The ``stats`` events of a server-sent event stream, parsed."""
    kind = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind == "stats":
            yield json.loads(line.removeprefix("data: "))
        elif not line:
            kind = None


async def test_the_stream_pushes_figures_as_they_change() -> None:
    flow = create(node(echo, "echo").to())
    async with (
        running(flow),
        await serve_flow(flow, port=0, interval_s=0.05) as server,
        tcp_client(server.url) as client,
        client.stream("GET", "/api/events") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        events = stats_events(response)
        first = await within(anext(events))
        await flow.emit(msg("x", "s-1"))
        await within(flow.fetch(trace_id="s-1"))

        async def until_counted() -> dict[str, Any]:
            async for snapshot in events:
                if snapshot["nodes"]["echo"]["succeeded"] == 1:
                    return snapshot
            raise AssertionError("the stream ended")

        later = await within(until_counted())
        await events.aclose()
    assert first["nodes"]["echo"]["succeeded"] == 0
    assert first["health"]["status"] == "ok" and first["health"]["running"] is True
    assert later["ts"] > first["ts"]
    assert later["nodes"]["echo"]["workers_alive"] == 1
    assert [(e["source"], e["target"]) for e in later["edges"]] == [
        ("OpenSea", "echo"),
        ("echo", "Rookery"),
    ]


async def test_closing_the_server_ends_open_streams() -> None:
    """A stream is open; ``close()`` ends it, and returns, without waiting for the client."""
    flow = create(node(echo, "echo").to())
    server = await serve_flow(flow, port=0, interval_s=30.0)
    async with tcp_client(server.url) as client, client.stream("GET", "/api/events") as response:
        events = stats_events(response)
        first = await within(anext(events))
        await within(server.close())
        rest = [snapshot async for snapshot in events]
    assert first["health"]["running"] is False
    assert rest == []  # the stream ended cleanly, with no further snapshot


async def test_the_json_api_answers_over_tcp() -> None:
    flow = create(node(echo, "echo").to())
    async with (
        running(flow),
        await serve_flow(flow, port=0) as server,
        tcp_client(server.url) as client,
    ):
        await flow.emit(msg("x", "tcp-1"))
        await within(flow.fetch(trace_id="tcp-1"))
        graph = (await client.get("/api/graph")).json()
        traces = (await client.get("/api/traces")).json()
        health = await client.get("/healthz")
    assert server.url == f"http://127.0.0.1:{server.port}/"
    assert [n["name"] for n in graph["nodes"]] == ["OpenSea", "echo", "Rookery"]
    assert [t["trace_id"] for t in traces["traces"]] == ["tcp-1"]
    assert health.status_code == 200


async def test_ipv6_loopback_and_localhost() -> None:
    flow = create(node(echo, "echo").to())
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    async with await serve_flow(flow, host="::1", port=0) as server:
        assert server.url == f"http://[::1]:{server.port}/"
        async with tcp_client(server.url) as client:
            assert (await client.get("/api/graph")).status_code == 200
    async with (
        await serve_flow(flow, host="localhost", port=0) as server,
        tcp_client(f"http://localhost:{server.port}") as client,
    ):
        assert (await client.get("/api/graph")).status_code == 200


async def test_a_port_in_use_is_an_os_error() -> None:
    flow = create(node(echo, "echo").to())
    async with await serve_flow(flow, port=0) as server:
        with pytest.raises(OSError):
            await serve_flow(create(node(echo, "echo").to()), port=server.port)


async def test_serve_forever_returns_when_closed_and_closes_when_cancelled() -> None:
    flow = create(node(echo, "echo").to())
    server = await serve_flow(flow, port=0)
    waiting = asyncio.create_task(server.serve_forever())
    await server.close()
    await within(waiting)
    await server.close()  # again: nothing to do

    other = await serve_flow(flow, port=0)
    forever = asyncio.create_task(other.serve_forever())
    async with tcp_client(other.url) as client:
        assert (await client.get("/api/graph")).status_code == 200
    forever.cancel()
    with pytest.raises(asyncio.CancelledError):
        await forever
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", other.port), timeout=TIMEOUT).close()


async def test_bad_arguments_are_named() -> None:
    flow = create(node(echo, "echo").to())
    with pytest.raises(ValueError, match=r"interval_s=\.\.\.\) must be > 0, got 0"):
        await serve_flow(flow, port=0, interval_s=0)
    with pytest.raises(ValueError, match="max_payload_chars must be an int >= 32, got 5"):
        await serve_flow(flow, port=0, max_payload_chars=5)
    with pytest.raises(TypeError, match=r"needs list_traces\(\) and load_history\(\)"):
        await serve_flow(flow, port=0, store=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_traces must be an int >= 1, got 0"):
        await serve_flow(flow, port=0, max_traces=0)


def test_importing_without_the_extra_names_the_install() -> None:
    """In a fresh interpreter where starlette cannot be imported."""
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "try:\n    import penguiflow.web\n"
        "except ImportError as error:\n    print(error)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=True
    ).stdout
    assert out.strip() == ("penguiflow.web needs starlette: pip install 'penguiflow-runtime[web]'")
