from __future__ import annotations

from typing import Any

from penguiflow.debug import format_flow_event
from penguiflow.errors import FlowError, FlowErrorCode
from penguiflow.metrics import FlowEvent


def make_event(**overrides: Any) -> FlowEvent:
    fields: dict[str, Any] = {
        "event_type": "node_failed",
        "ts": 2.0,
        "node_name": "n",
        "node_id": "nid",
        "trace_id": "t",
        "attempt": 1,
        "latency_ms": 4.0,
        "queue_depth_in": 0,
        "queue_depth_out": 0,
        "outgoing_edges": 1,
        "queue_maxsize": 64,
        "trace_pending": 1,
        "trace_inflight": 0,
        "trace_cancelled": False,
        "extra": {},
    }
    fields.update(overrides)
    return FlowEvent(**fields)


def test_without_error_payload_is_the_plain_payload_copy() -> None:
    event = make_event(extra={"exception": "RuntimeError('x')"})
    formatted = format_flow_event(event)
    assert formatted == event.to_payload()
    assert not any(key.startswith("flow_error") for key in formatted)


def test_returns_a_fresh_mutable_dict() -> None:
    event = make_event()
    first = format_flow_event(event)
    first["event"] = "changed"
    assert format_flow_event(event)["event"] == "node_failed"


def test_error_payload_is_copied_and_spread_per_key() -> None:
    err = FlowError(
        trace_id="t",
        node_name="n",
        code=FlowErrorCode.NODE_EXCEPTION,
        message="boom",
        metadata={"attempt": 1},
    )
    event = make_event(extra={"exception": "X", "flow_error": err.to_payload()})
    formatted = format_flow_event(event)
    assert formatted["flow_error"] == err.to_payload()
    assert type(formatted["flow_error"]) is dict
    assert formatted["flow_error_code"] == "NODE_EXCEPTION"
    assert formatted["flow_error_message"] == "boom"
    assert formatted["flow_error_trace_id"] == "t"
    assert formatted["flow_error_node_name"] == "n"
    assert formatted["flow_error_metadata"] == {"attempt": 1}
    assert formatted["exception"] == "X"
    assert formatted["event"] == "node_failed"
    formatted["flow_error"]["code"] = "mutated"
    assert event.extra["flow_error"]["code"] == "NODE_EXCEPTION"


def test_non_mapping_flow_error_is_not_spread() -> None:
    event = make_event(extra={"flow_error": "just text"})
    formatted = format_flow_event(event)
    assert formatted["flow_error"] == "just text"
    assert "flow_error_code" not in formatted
