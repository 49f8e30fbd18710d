from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import penguiflow.middlewares as middlewares
from penguiflow.metrics import FlowEvent
from penguiflow.middlewares import LatencyCallback, Middleware, log_flow_events


def make_event(event_type: str, **overrides: Any) -> FlowEvent:
    fields: dict[str, Any] = {
        "event_type": event_type,
        "ts": 1.0,
        "node_name": "worker",
        "node_id": "nid",
        "trace_id": "t1",
        "attempt": 0,
        "latency_ms": 12.5,
        "queue_depth_in": 1,
        "queue_depth_out": 2,
        "outgoing_edges": 1,
        "queue_maxsize": 64,
        "trace_pending": 3,
        "trace_inflight": 1,
        "trace_cancelled": False,
        "extra": {},
    }
    fields.update(overrides)
    return FlowEvent(**fields)


def test_all_is_exactly_the_spec_list() -> None:
    assert middlewares.__all__ == ["Middleware", "FlowEvent", "log_flow_events", "LatencyCallback"]
    assert middlewares.FlowEvent is FlowEvent


async def test_any_async_callable_is_a_middleware() -> None:
    seen: list[FlowEvent] = []

    async def record(event: FlowEvent) -> None:
        seen.append(event)

    mw: Middleware = record
    event = make_event("node_start")
    await mw(event)
    assert seen == [event]


async def test_default_logger_is_penguiflow_flow(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="penguiflow.flow")
    mw = log_flow_events()
    await mw(make_event("node_start"))
    assert [r.name for r in caplog.records] == ["penguiflow.flow"]


@pytest.mark.parametrize(
    ("event_type", "level"),
    [("node_start", logging.DEBUG), ("node_success", logging.WARNING), ("node_error", 35)],
)
async def test_handled_events_log_type_and_payload_at_their_level(
    caplog: pytest.LogCaptureFixture, event_type: str, level: int
) -> None:
    logger = logging.getLogger("test.mw.levels")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    mw = log_flow_events(
        logger, start_level=logging.DEBUG, success_level=logging.WARNING, error_level=35
    )
    event = make_event(event_type, extra={"custom": "x"})
    await mw(event)
    (record,) = caplog.records
    assert record.levelno == level
    assert record.getMessage() == event_type
    for key, value in event.to_payload().items():
        assert getattr(record, key) == value
    assert record.custom == "x"  # type: ignore[attr-defined]


async def test_default_levels_are_info_info_error(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.mw.defaults")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    mw = log_flow_events(logger)
    for event_type in ("node_start", "node_success", "node_error"):
        await mw(make_event(event_type))
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO, logging.ERROR]


@pytest.mark.parametrize(
    "event_type",
    ["node_failed", "node_retry", "node_timeout", "node_cancelled", "trace_cancel_start"],
)
async def test_other_events_are_ignored(caplog: pytest.LogCaptureFixture, event_type: str) -> None:
    logger = logging.getLogger("test.mw.ignored")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    calls: list[str] = []
    mw = log_flow_events(logger, latency_callback=lambda name, ms, ev: calls.append(name))
    await mw(make_event(event_type, extra={"flow_error": {"code": "X"}}))
    assert caplog.records == []
    assert calls == []


async def test_node_error_adds_error_payload_when_present(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.mw.errpayload")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    mw = log_flow_events(logger)
    flow_error = {"code": "NODE_EXCEPTION", "message": "boom"}
    await mw(make_event("node_error", extra={"flow_error": flow_error}))
    await mw(make_event("node_error"))
    await mw(make_event("node_success", extra={"flow_error": flow_error}))
    with_payload, without_payload, success = caplog.records
    assert with_payload.error_payload == flow_error  # type: ignore[attr-defined]
    assert isinstance(with_payload.error_payload, dict)  # type: ignore[attr-defined]
    assert not hasattr(without_payload, "error_payload")
    assert not hasattr(success, "error_payload")


async def test_latency_callback_gets_success_and_error_latencies() -> None:
    calls: list[tuple[str, float, FlowEvent]] = []

    def callback(event_type: str, latency_ms: float, event: FlowEvent) -> None:
        calls.append((event_type, latency_ms, event))

    cb: LatencyCallback = callback
    mw = log_flow_events(logging.getLogger("test.mw.latency"), latency_callback=cb)
    start = make_event("node_start", latency_ms=0.0)
    success = make_event("node_success", latency_ms=7)
    error = make_event("node_error", latency_ms=3.5)
    no_latency = make_event("node_success", latency_ms=None)
    for event in (start, success, error, no_latency):
        await mw(event)
    assert calls == [("node_success", 7.0, success), ("node_error", 3.5, error)]
    assert isinstance(calls[0][1], float)


async def test_failing_latency_callback_is_logged_and_swallowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.mw.cbfail")
    caplog.set_level(logging.DEBUG, logger=logger.name)

    def broken(event_type: str, latency_ms: float, event: FlowEvent) -> None:
        raise ValueError("callback broke")

    mw = log_flow_events(logger, latency_callback=broken)
    await mw(make_event("node_success", node_name="n", node_id="id-n", trace_id="tr"))
    logged, failure = caplog.records
    assert logged.getMessage() == "node_success"
    assert failure.getMessage() == "log_flow_events_latency_callback_error"
    assert failure.levelno == logging.ERROR
    assert failure.event == "log_flow_events_latency_callback_error"  # type: ignore[attr-defined]
    assert failure.node_name == "n"  # type: ignore[attr-defined]
    assert failure.node_id == "id-n"  # type: ignore[attr-defined]
    assert failure.trace_id == "tr"  # type: ignore[attr-defined]
    assert failure.exc_info is not None
    assert isinstance(failure.exc_info[1], ValueError)


async def test_cancellation_in_callback_is_not_swallowed() -> None:
    def cancelling(event_type: str, latency_ms: float, event: FlowEvent) -> None:
        raise asyncio.CancelledError

    mw = log_flow_events(logging.getLogger("test.mw.cancel"), latency_callback=cancelling)
    with pytest.raises(asyncio.CancelledError):
        await mw(make_event("node_success"))
