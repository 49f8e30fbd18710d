"""A process that runs a flow on a ``SQLiteStore`` until its disk is full, for test_disk_full.

The disk is made small one of two ways (``--disk``): ``tmpfs``, a small filesystem the test
mounted at ``--dir``, which this process fills with a filler file and frees by deleting it;
or ``fsize``, a file size limit (``RLIMIT_FSIZE``, with ``SIGXFSZ`` ignored) set once the
store is open and lifted to free it.

Either way the flow emits traces (fetching each) until the store's status leaves ``ok``, then
waits, polling with deadlines, until it is ``failing``, and tries one more trace, which must be
refused. Then, ``--phase recover``: the space is freed, the store must recover by itself and
the flow accept and finish new traces; ``--phase abandon``: the disk stays full, ``stop()``
and ``close(timeout_s=1)`` must return within their bounds, the latter reporting the writes
abandoned, and no thread may be left but the main one. Assertions fail the process; what was
measured is printed as one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
from typing import Any

from penguiflow import Headers, Message, Node, NodePolicy, PenguiFlow
from penguiflow.stores import SQLiteStore, WritesAbandonedError

FAILING_AFTER_S = 0.5
PAYLOAD = "x" * 1024


def files_size(directory: str) -> int:
    """Bytes of the store's files (the database, its WAL and shared memory)."""
    return sum(
        os.path.getsize(os.path.join(directory, name))
        for name in os.listdir(directory)
        if name.startswith("state.db")
    )


async def until(condition: Any, within_s: float, what: str) -> float:
    """Poll ``condition`` until true; return the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < within_s, f"not within {within_s} s: {what}"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def echo(message: Message, ctx: Any) -> Message:
    return message


def message(trace_id: str) -> Message:
    return Message(payload=PAYLOAD, headers=Headers(tenant="t"), trace_id=trace_id)


class SmallDisk:
    """Makes the store's disk small, and frees it."""

    def __init__(self, kind: str, directory: str) -> None:
        self.kind = kind
        self.filler = os.path.join(directory, "filler")

    def shrink(self) -> None:
        if self.kind == "tmpfs":
            # Leave 1 MiB free: a full disk within a second of emitting.
            stat = os.statvfs(os.path.dirname(self.filler))
            with open(self.filler, "wb") as filler:
                filler.write(b"\0" * (stat.f_bavail * stat.f_frsize - 1024 * 1024))
        else:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a short write fails, no signal
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, hard))

    def free(self) -> None:
        if self.kind == "tmpfs":
            os.remove(self.filler)
        else:
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the scenario; on a failed assertion, still release everything so the process exits.

    (An unclosed ``SQLiteStore`` would keep it alive: aiosqlite's threads are not daemons.)
    """
    disk = SmallDisk(args.disk, args.dir)
    if args.disk == "tmpfs":
        disk.shrink()
    store = SQLiteStore(
        os.path.join(args.dir, "state.db"),
        failing_after_s=FAILING_AFTER_S,
        # The backlog, hence what must fit once space is freed, is at most ``buffer_size``
        # writes (about 2 MB here); what fails, and is retried, at most ``batch_size``.
        batch_size=64,
        buffer_size=1024,
        retry_max_s=0.1,
        # Traces go through while the disk fills, to find its limit; with "commit", emit() and
        # fetch() would wait for their commits (test_durability and test_failing_commits
        # check that mode against failing commits).
        durability="queued",
    )
    await store.start()
    if args.disk == "fsize":
        disk.shrink()
    flow = PenguiFlow(
        Node(echo, name="echo", policy=NodePolicy(validate="none")).to(), state_store=store
    )
    flow.run()
    try:
        return await scenario(args, disk, store, flow)
    finally:
        await flow.stop()
        with contextlib.suppress(WritesAbandonedError):
            await store.close(timeout_s=1.0)


async def scenario(
    args: argparse.Namespace, disk: SmallDisk, store: SQLiteStore, flow: PenguiFlow
) -> dict[str, Any]:
    """The steps the module docstring describes; returns what was measured."""
    report: dict[str, Any] = {"disk": args.disk, "phase": args.phase}
    accepted: list[str] = []
    start = time.monotonic()
    while store.status == "ok":
        assert time.monotonic() - start < 20.0, "the disk never filled"
        trace_id = f"t{len(accepted)}"
        await flow.emit(message(trace_id))
        fetched = await asyncio.wait_for(flow.fetch(), 5.0)
        assert fetched.trace_id == trace_id
        accepted.append(trace_id)
        # One trace's writes at a time: the buffer never fills, so neither emit() nor a node
        # saving its events waits for room on a full disk (they would, until it is freed).
        await until(lambda: not store.pending_writes or store.status != "ok", 5.0, "a commit")
    report["seconds_to_degraded"] = time.monotonic() - start
    report["traces_before_full"] = len(accepted)
    report["bytes_before_full"] = files_size(args.dir)
    health = flow.health()
    report["error"] = repr(store.last_error)
    assert health.status == "degraded" and health.store_status == "degraded", health
    assert health.store == f"{store.describe()}: {store.last_error!r}", health.store
    report["seconds_degraded_to_failing"] = await until(
        lambda: flow.health().status == "failing", 5.0, "failing"
    )
    assert flow.health().store_status == "failing"
    try:
        await flow.emit(message("refused"))
    except RuntimeError as refused:
        report["refused"] = str(refused)
    else:
        raise AssertionError("a new trace was accepted while the store was failing")
    if args.phase == "recover":
        disk.free()
        report["recovery_s"] = await until(lambda: store.status == "ok", 10.0, "recovered")
        assert flow.health().status == "ok" and flow.health().store == store.describe()
        for trace_id in ("after0", "after1"):
            await flow.emit(message(trace_id))
            assert (await asyncio.wait_for(flow.fetch(), 5.0)).trace_id == trace_id
            accepted.append(trace_id)
        await flow.stop()
        await store.flush(timeout_s=5.0)
        traces = {t.trace_id: t.status for t in await store.list_traces(limit=100_000)}
        assert traces == dict.fromkeys(accepted, "finished"), traces
        report["traces_stored"] = len(traces)
        await store.close(timeout_s=5.0)
    else:
        began = time.monotonic()
        await flow.stop()
        report["stop_s"] = time.monotonic() - began
        report["pending_writes"] = store.pending_writes
        began = time.monotonic()
        try:
            await store.close(timeout_s=1.0)
        except WritesAbandonedError as lost:
            report["abandoned"] = lost.count
        report["close_s"] = time.monotonic() - began
        assert report.get("abandoned") == report["pending_writes"] > 0, report
        for thread in threading.enumerate():
            if thread is not threading.main_thread():
                thread.join(timeout=2.0)
        report["threads_left"] = [t.name for t in threading.enumerate()][1:]
        assert not report["threads_left"], report
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--disk", choices=["tmpfs", "fsize"], required=True)
    parser.add_argument("--phase", choices=["recover", "abandon"], required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the write failures are expected
    report = asyncio.run(run(args))
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps(report), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
