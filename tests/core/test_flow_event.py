"""Spec section 6: ``FlowEvent`` in ``penguiflow.metrics``."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import penguiflow
from penguiflow.metrics import FlowEvent

FIELDS = [
    "event_type",
    "ts",
    "node_name",
    "node_id",
    "trace_id",
    "attempt",
    "latency_ms",
    "queue_depth_in",
    "queue_depth_out",
    "outgoing_edges",
    "queue_maxsize",
    "trace_pending",
    "trace_inflight",
    "trace_cancelled",
    "extra",
]


def make_event(**overrides: Any) -> FlowEvent:
    values: dict[str, Any] = {
        "event_type": "node_start",
        "ts": 123.5,
        "node_name": "a",
        "node_id": "id-a",
        "trace_id": "t1",
        "attempt": 2,
        "latency_ms": 1.5,
        "queue_depth_in": 3,
        "queue_depth_out": 4,
        "outgoing_edges": 2,
        "queue_maxsize": 64,
        "trace_pending": 5,
        "trace_inflight": 1,
        "trace_cancelled": False,
    }
    values.update(overrides)
    return FlowEvent(**values)


def test_fields_in_order_frozen_and_slotted() -> None:
    assert [f.name for f in dataclasses.fields(FlowEvent)] == FIELDS
    ev = make_event()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.attempt = 3  # type: ignore[misc]
    assert not hasattr(ev, "__dict__")
    assert penguiflow.FlowEvent is FlowEvent


def test_positional_construction_follows_field_order() -> None:
    ev = FlowEvent("e", 1.0, "n", "i", "t", 0, None, 1, 2, 3, 4, None, 0, True)
    assert (ev.event_type, ev.queue_depth_in, ev.queue_maxsize) == ("e", 1, 4)
    assert ev.trace_cancelled is True
    assert dict(ev.extra) == {}


def test_extra_is_a_read_only_copy() -> None:
    source = {"k": 1}
    ev = make_event(extra=source)
    source["k"] = 2
    source["new"] = 3
    assert dict(ev.extra) == {"k": 1}
    with pytest.raises(TypeError):
        ev.extra["k"] = 5  # type: ignore[index]


def test_error_payload_is_a_read_only_copy_of_the_flow_error_mapping() -> None:
    flow_error = {"code": "NODE_EXCEPTION", "message": "boom"}
    ev = make_event(extra={"flow_error": flow_error})
    payload = ev.error_payload
    assert payload is not None
    assert dict(payload) == flow_error
    with pytest.raises(TypeError):
        payload["code"] = "X"  # type: ignore[index]
    flow_error["code"] = "CHANGED"
    assert payload["code"] == "NODE_EXCEPTION"


@pytest.mark.parametrize("extra", [{}, {"flow_error": "text"}, {"flow_error": None}])
def test_error_payload_is_none_without_a_mapping(extra: dict[str, Any]) -> None:
    assert make_event(extra=extra).error_payload is None


def test_queue_depth_sums_both_sides() -> None:
    assert make_event(queue_depth_in=3, queue_depth_out=4).queue_depth == 7


def test_to_payload_keys_in_order() -> None:
    ev = make_event()
    payload = ev.to_payload()
    assert list(payload) == [
        "ts",
        "event",
        "node_name",
        "node_id",
        "trace_id",
        "latency_ms",
        "q_depth_in",
        "q_depth_out",
        "q_depth_total",
        "outgoing",
        "queue_maxsize",
        "attempt",
        "trace_inflight",
        "trace_cancelled",
        "trace_pending",
    ]
    assert payload == {
        "ts": 123.5,
        "event": "node_start",
        "node_name": "a",
        "node_id": "id-a",
        "trace_id": "t1",
        "latency_ms": 1.5,
        "q_depth_in": 3,
        "q_depth_out": 4,
        "q_depth_total": 7,
        "outgoing": 2,
        "queue_maxsize": 64,
        "attempt": 2,
        "trace_inflight": 1,
        "trace_cancelled": False,
        "trace_pending": 5,
    }


def test_to_payload_omits_missing_pending_and_merges_extra_last() -> None:
    ev = make_event(trace_pending=None, extra={"node_name": "override", "custom": 1})
    payload = ev.to_payload()
    assert "trace_pending" not in payload
    assert payload["node_name"] == "override"
    assert list(payload)[-1] == "custom"
    payload["custom"] = 2
    assert ev.to_payload()["custom"] == 1


def test_metric_samples_full() -> None:
    ev = make_event(trace_cancelled=True)
    assert ev.metric_samples() == {
        "queue_depth_in": 3.0,
        "queue_depth_out": 4.0,
        "queue_depth_total": 7.0,
        "attempt": 2.0,
        "trace_inflight": 1.0,
        "trace_cancelled": 1.0,
        "trace_pending": 5.0,
        "latency_ms": 1.5,
    }
    assert all(type(v) is float for v in ev.metric_samples().values())


def test_metric_samples_without_optional_values() -> None:
    samples = make_event(trace_pending=None, latency_ms=None).metric_samples()
    assert samples == {
        "queue_depth_in": 3.0,
        "queue_depth_out": 4.0,
        "queue_depth_total": 7.0,
        "attempt": 2.0,
        "trace_inflight": 1.0,
        "trace_cancelled": 0.0,
    }


def test_metric_samples_extra_latency_overrides_when_float_accepts_it() -> None:
    assert make_event(extra={"latency_ms": "21.0"}).metric_samples()["latency_ms"] == 21.0
    assert (
        make_event(latency_ms=None, extra={"latency_ms": 3}).metric_samples()["latency_ms"] == 3.0
    )
    kept = make_event(latency_ms=1.5, extra={"latency_ms": "not-a-number"}).metric_samples()
    assert kept["latency_ms"] == 1.5


def test_tag_values() -> None:
    ev = make_event(
        extra={"s": "x", "i": 1, "f": 2.5, "b": True, "l": [1], "d": {"a": 1}, "n": None}
    )
    assert ev.tag_values() == {
        "event_type": "node_start",
        "node_name": "a",
        "node_id": "id-a",
        "trace_id": "t1",
        "s": "x",
        "i": "1",
        "f": "2.5",
        "b": "True",
    }


def test_tag_values_skip_unset_identity_fields() -> None:
    ev = make_event(node_name=None, node_id=None, trace_id=None)
    assert ev.tag_values() == {"event_type": "node_start"}


def test_runtime_built_events_are_genuine_frozen_flow_events() -> None:
    """The runtime's fast builder yields real FlowEvents: same type, fields and equality as
    the constructor's, frozen, with ``extra`` copied behind a read-only proxy."""
    import dataclasses

    from penguiflow._events import NO_EXTRA, new_event

    names = [f.name for f in dataclasses.fields(FlowEvent)][:-1]
    values = ("node_start", 1.5, "a", "id", "t", 2, 0.0, 1, 2, 3, 64, 4, 1, False)
    fields = dict(zip(names, values, strict=True))
    source = {"k": 1}
    built = new_event(**fields, extra=source)
    assert type(built) is FlowEvent
    assert built == FlowEvent(*values, extra=source)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.attempt = 9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del built.trace_id  # type: ignore[misc]
    source["k"] = 2
    assert built.extra == {"k": 1}
    with pytest.raises(TypeError):
        built.extra["k"] = 3  # type: ignore[index]
    assert dataclasses.replace(built, attempt=5).attempt == 5
    assert new_event(**fields, extra=NO_EXTRA).extra == {}


def test_standard_payload_fields_are_the_keys_to_payload_fills() -> None:
    from penguiflow._events import STANDARD_PAYLOAD_FIELDS

    payload = make_event().to_payload()
    assert set(payload) == STANDARD_PAYLOAD_FIELDS
