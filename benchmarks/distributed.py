"""Redis Streams backend: latency and throughput against a raw redis-py floor, same run.

Starts its own ``redis-server`` (AOF everysec, as recommended) on a free loopback port, or
uses ``--redis URL``. Workers are real ``penguiflow worker`` processes. Prints, each with its
target from the issue:

- floor: XADD + XREADGROUP + XACK one message at a time (p50 per message), and the same
  pipelined in batches of 100 (messages per second);
- 1 message in flight, 1 hop through a worker process: p50 round trip (target <= 1.5 ms);
- a no-op node, one worker process, many in flight: messages per second (targets >= 10k/s and
  >= 0.3x the pipelined floor; the floor does no work per message and acks by the hundred);
- an I/O-bound node (5 ms): two worker processes against one (target >= 1.8x).

Run: ``python benchmarks/distributed.py [--redis URL] [--count N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

from penguiflow import Headers, Message, Node, NodePolicy, create
from penguiflow.distributed import RedisBackend, RemoteFlow
from penguiflow.distributed._envelope import encode

if TYPE_CHECKING:
    from penguiflow.core import PenguiFlow

HERE = os.path.abspath(__file__)
HEADERS = Headers(tenant="bench")


async def _identity(message: Message, _ctx: Any) -> Message:
    return message


async def _io_bound(message: Message, _ctx: Any) -> Message:
    await asyncio.sleep(0.005)
    return message


def identity() -> PenguiFlow:
    # Unbounded: the throughput runs add all their messages at once.
    node = Node(_identity, name="noop", policy=NodePolicy(validate="none"))
    return create(node.to(), queue_maxsize=0)


def io_bound() -> PenguiFlow:
    node = Node(_io_bound, name="io", policy=NodePolicy(validate="none"))
    return create(node.to(), queue_maxsize=0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
         "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("redis-server did not start")


async def floor(url: str, count: int) -> tuple[float, float]:
    """p50 seconds per message one at a time, and messages/s pipelined by 100."""
    backend = RedisBackend(url)
    client = backend.open()
    stream = "bench:floor"
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    times = []
    for i in range(min(count, 2000)):
        started = time.perf_counter()
        await client.xadd(stream, {"e": str(i)})
        reply = await client.xreadgroup("g", "c", {stream: ">"}, count=1)
        entry_id = reply[0][1][0][0]
        await client.xack(stream, "g", entry_id)
        await client.xdel(stream, entry_id)
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(count // 100):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(100):
                pipe.xadd(stream, {"e": str(i)})
            await pipe.execute()
        reply = await client.xreadgroup("g", "c", {stream: ">"}, count=100)
        ids = [entry_id for entry_id, _fields in reply[0][1]]
        async with client.pipeline(transaction=False) as pipe:
            pipe.xack(stream, "g", *ids)
            pipe.xdel(stream, *ids)
            await pipe.execute()
    rate = (count // 100) * 100 / (time.perf_counter() - started)
    await client.delete(stream)
    await client.aclose()
    return statistics.median(times), rate


async def start_worker(url: str, target: str, flow_id: str, *extra: str) -> Any:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "penguiflow", "worker", f"{HERE}:{target}", "--redis", url,
        "--flow-id", flow_id, *extra, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = await process.stdout.readline()
    if b"ready" not in line:
        raise RuntimeError(f"worker did not start: {line!r}")
    return process


async def stop_workers(processes: list[Any]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        await process.wait()


async def one_in_flight(url: str, count: int) -> float:
    """p50 seconds for emit + fetch of one message at a time through one hop."""
    worker = await start_worker(url, "identity", "lat")
    backend = RedisBackend(url, flow_id="lat")
    try:
        async with RemoteFlow(identity(), backend) as remote:
            times = []
            for i in range(min(count, 2000)):
                started = time.perf_counter()
                await remote.emit(Message(payload=i, headers=HEADERS), trace_id=str(i))
                await remote.fetch(trace_id=str(i))
                times.append(time.perf_counter() - started)
        return statistics.median(times[50:] or times)
    finally:
        await backend.close()
        await stop_workers([worker])


async def throughput(url: str, target: str, flow: PenguiFlow, count: int, workers: int,
                     concurrency: int) -> float:  # fmt: skip
    """Messages per second through ``workers`` processes, already running.

    The messages are added to the ingress stream in pipelines (far faster than the workers
    consume them) and the clock runs until the last result is in the caller's stream.
    """
    flow_id = f"tp-{target}-{workers}-{time.monotonic_ns()}"
    backend = RedisBackend(url, flow_id=flow_id, results_maxsize=0)
    processes: list[Any] = []
    try:
        processes = list(
            await asyncio.gather(
                *(
                    start_worker(url, target, flow_id, "--concurrency", str(concurrency))
                    for _ in range(workers)
                )
            )
        )
        async with RemoteFlow(flow, backend) as remote:
            types = backend.type_table(flow, None)
            ingress = next(iter(backend.topology(flow).ingress.values()))
            bodies = [
                encode(Message(payload=i, headers=HEADERS), reply_to=remote.results,
                       trace_id=None, types=types, where="bench",
                       limit=backend.max_envelope_bytes)
                for i in range(count)
            ]  # fmt: skip
            client = await backend.connect()
            started = time.perf_counter()
            for first in range(0, count, 500):
                async with client.pipeline(transaction=False) as pipe:
                    for body in bodies[first : first + 500]:
                        pipe.xadd(ingress, {"e": body})
                    await pipe.execute()
            while await client.xlen(remote.results) < count:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.002)
            return count / (time.perf_counter() - started)
    finally:
        await backend.close()
        await stop_workers(processes)


async def main(url: str, count: int) -> None:
    p50_floor, rate_floor = await floor(url, count)
    print(f"floor: XADD+XREADGROUP+XACK one at a time p50 {p50_floor * 1000:.3f} ms; "
          f"pipelined x100 {rate_floor:,.0f} msg/s")  # fmt: skip
    p50 = await one_in_flight(url, count)
    print(f"1 in flight, 1 hop: p50 {p50 * 1000:.3f} ms (target <= 1.5 ms; "
          f"{p50 / p50_floor:.1f}x the floor)")  # fmt: skip
    rate = await throughput(url, "identity", identity(), count, 1, 64)
    print(f"no-op node, 1 worker process: {rate:,.0f} msg/s (target >= 10,000; "
          f"{rate / rate_floor:.2f}x the pipelined floor, target >= 0.3x)")  # fmt: skip
    io_count = max(count // 10, 400)
    one = await throughput(url, "io_bound", io_bound(), io_count, 1, 8)
    two = await throughput(url, "io_bound", io_bound(), io_count, 2, 8)
    print(f"I/O-bound node (5 ms): 1 worker {one:,.0f} msg/s, 2 workers {two:,.0f} msg/s: "
          f"{two / one:.2f}x (target >= 1.8x)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="use this server instead of starting one")
    parser.add_argument("--count", type=int, default=20_000)
    options = parser.parse_args()
    if options.redis:
        asyncio.run(main(options.redis, options.count))
    else:
        with tempfile.TemporaryDirectory() as directory:
            server, url = start_redis(directory)
            try:
                asyncio.run(main(url, options.count))
            finally:
                server.kill()
                server.wait()
