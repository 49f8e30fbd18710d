"""Spec section 7.13: event fields, levels, log records, dispatch order and failing observers."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError

from .helpers import Recorder, echo, fetch, make_msg, node, running

if TYPE_CHECKING:
    import pytest

    from penguiflow.metrics import FlowEvent

LOGGER = "penguiflow.core"

LEVELS = {
    "node_start": logging.DEBUG,
    "node_success": logging.INFO,
    "node_error": logging.ERROR,
    "node_timeout": logging.WARNING,
    "node_retry": logging.INFO,
    "node_failed": logging.ERROR,
    "deadline_skip": logging.INFO,
    "trace_cancel_drop": logging.INFO,
    "node_trace_cancelled": logging.INFO,
    "node_cancelled": logging.DEBUG,
    "trace_cancel_start": logging.INFO,
    "trace_cancel_finish": logging.INFO,
}


def core_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


async def test_event_fields_come_from_the_node_context(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    rec = Recorder()
    a, b, c = node(echo, "a"), node(echo, "b"), node(echo, "c")
    flow = PenguiFlow(a.to(b, c), queue_maxsize=7, middlewares=[rec])
    before = time.time()
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
        await fetch(flow)
    after = time.time()
    start_a = rec.select("node_start", node_name="a")[0]
    assert start_a.node_id == a.node_id
    assert start_a.trace_id == "t1"
    assert start_a.outgoing_edges == 2
    assert start_a.queue_maxsize == 7
    assert start_a.queue_depth_in == 0
    assert before <= start_a.ts <= after
    success_a = rec.select("node_success", node_name="a")[0]
    assert success_a.queue_depth_out == 2  # one item waiting on each of b's and c's floes
    assert rec.select("node_start", node_name="b")[0].outgoing_edges == 1


async def test_log_records_carry_level_message_and_payload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    rec = Recorder()
    flow = PenguiFlow(node(echo, "a").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
    events = rec.select(trace_id="t1")
    records = [r for r in core_records(caplog) if getattr(r, "trace_id", None) == "t1"]
    assert [r.getMessage() for r in records] == [
        f"{ev.event_type} node=a trace=t1 attempt={ev.attempt}" for ev in events
    ]
    for record, ev in zip(records, events, strict=True):
        assert record.levelno == LEVELS[ev.event_type]
        payload = ev.to_payload()
        for key, value in payload.items():
            if key == "ts":
                continue
            assert getattr(record, key) == value, key
        assert record.event == ev.event_type
        assert record.node_name == "a"


async def test_failure_events_levels_extras_and_exc_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    async def boom(msg: Any, ctx: Any) -> Any:
        raise ValueError("bad")

    rec = Recorder()
    flow = PenguiFlow(
        node(boom, "boom", max_retries=1, backoff_base=0.0).to(),
        emit_errors_to_rookery=True,
        middlewares=[rec],
    )
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        err = await fetch(flow)
    assert isinstance(err, FlowError)
    assert rec.types(trace_id="t1") == [
        "node_start",
        "node_error",
        "node_retry",
        "node_start",
        "node_error",
        "node_failed",
    ]
    by_type = {r.event: r for r in core_records(caplog)}
    for name in ("node_error", "node_failed"):
        assert by_type[name].levelno == logging.ERROR
        assert by_type[name].exc_info is not None
        assert isinstance(by_type[name].exc_info[1], ValueError)
    assert by_type["node_retry"].levelno == logging.INFO
    assert not by_type["node_retry"].exc_info
    failed = rec.select("node_failed")[0]
    assert set(failed.extra) == {"exception", "flow_error"}
    assert failed.error_payload == err.to_payload()
    assert failed.latency_ms is not None
    assert by_type["node_failed"].flow_error == err.to_payload()


async def test_node_cancelled_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    flow = PenguiFlow(node(echo, "a").to())
    async with running(flow):
        await flow.emit("warm-up")
        await fetch(flow)
    cancelled = [r for r in core_records(caplog) if r.event == "node_cancelled"]
    assert len(cancelled) == 1
    assert cancelled[0].levelno == logging.DEBUG
    assert cancelled[0].node_name == "a"
    assert cancelled[0].trace_id is None


async def test_dispatch_order_is_log_then_store_then_middlewares(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    order: list[tuple[str, str]] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "trace_id", None) == "t1":
                order.append(("log", record.event))

    class Store:
        async def save_event(self, event: Any) -> None:
            if event.trace_id == "t1":
                order.append(("store", event.kind))

        async def load_history(self, trace_id: str) -> list[Any]:
            return []

        async def save_remote_binding(self, binding: Any) -> None:
            return None

    def middleware(label: str) -> Any:
        async def mw(event: FlowEvent) -> None:
            if event.trace_id == "t1":
                order.append((label, event.event_type))

        return mw

    handler = Handler()
    logging.getLogger(LOGGER).addHandler(handler)
    try:
        flow = PenguiFlow(
            node(echo, "a").to(),
            state_store=Store(),
            middlewares=[middleware("mw1"), middleware("mw2")],
        )
        async with running(flow):
            await flow.emit(make_msg("x", trace_id="t1"))
            await fetch(flow)
    finally:
        logging.getLogger(LOGGER).removeHandler(handler)
    expected = []
    for name in ("node_start", "node_success"):
        expected += [("log", name), ("store", name), ("mw1", name), ("mw2", name)]
    assert order == expected


async def test_failing_middleware_is_logged_and_swallowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    async def broken(event: FlowEvent) -> None:
        raise RuntimeError("middleware down")

    after = Recorder()
    flow = PenguiFlow(node(echo, "a").to(), middlewares=[broken, after])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        out = await fetch(flow)
    assert out.payload == "x"
    assert after.types(trace_id="t1") == ["node_start", "node_success"]
    errors = [r for r in caplog.records if r.getMessage() == "middleware_error"]
    assert len(errors) >= 2  # once per event that reached the broken middleware


async def test_failing_store_is_logged_and_the_flow_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    class BrokenStore:
        async def save_event(self, event: Any) -> None:
            raise OSError("disk full")

        async def load_history(self, trace_id: str) -> list[Any]:
            return []

        async def save_remote_binding(self, binding: Any) -> None:
            return None

    rec = Recorder()
    flow = PenguiFlow(node(echo, "a").to(), state_store=BrokenStore(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        assert (await fetch(flow)).payload == "x"
    assert rec.types(trace_id="t1") == ["node_start", "node_success"]
    failures = [r for r in caplog.records if r.getMessage() == "state_store_save_failed"]
    assert {r.kind for r in failures if r.trace_id == "t1"} == {"node_start", "node_success"}
    for record in failures:
        assert record.levelno == logging.ERROR
        assert record.event == "state_store_save_failed"
        assert record.exception == "OSError('disk full')"
        assert record.exc_info is not None


async def test_middleware_list_can_be_mutated_directly() -> None:
    rec = Recorder()
    flow = PenguiFlow(node(echo, "a").to())
    flow._middlewares.append(rec)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
    assert rec.types(trace_id="t1") == ["node_start", "node_success"]


async def test_timeout_event_is_a_warning_with_exc_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    async def late(msg: Any, ctx: Any) -> Any:
        raise TimeoutError("late")

    flow = PenguiFlow(node(late, "late").to(), emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
    [record] = [r for r in core_records(caplog) if r.event == "node_timeout"]
    assert record.levelno == logging.WARNING
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], TimeoutError)
    assert record.exception == "TimeoutError('late')"
