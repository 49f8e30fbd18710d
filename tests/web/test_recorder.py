"""The recorder's counts and bounds, and the rate meter, fed events as the runtime builds them."""

from __future__ import annotations

import pytest
from core.helpers import echo, node, running, within
from observe.support import event

from penguiflow.core import create
from penguiflow.web import create_app
from penguiflow.web._recorder import RATE_WINDOW_S, RateMeter, Recorder

from .support import asgi_client, msg


async def test_counts_by_node_and_outcome() -> None:
    recorder = Recorder(keep_traces=False)
    for kind in ("node_success", "node_success", "node_error", "node_timeout", "node_retry"):
        await recorder(event(kind, "a", "t"))
    for kind in ("node_failed", "node_trace_cancelled", "node_start"):
        await recorder(event(kind, "b", "t"))
    a, b = recorder.counts["a"], recorder.counts["b"]
    assert (a.succeeded, a.errors, a.retries, a.failed) == (2, 2, 1, 0)
    assert (b.failed, b.cancelled, b.succeeded) == (1, 1, 0)
    assert recorder.successes() == {"a": 2, "b": 0}
    assert recorder.traces == {}  # keep_traces off: nothing logged


def test_a_trace_keeps_its_latest_events_and_counts_the_rest() -> None:
    recorder = Recorder(keep_traces=True, max_events=3)
    for index in range(5):
        recorder.record(event("node_start", f"n{index}", "t"))
    recorder.record(event("node_start", "n", None))  # no trace: counted nowhere, logged nowhere
    log = recorder.traces["t"]
    assert [e.node_name for e in log.events] == ["n2", "n3", "n4"]
    assert log.dropped == 2
    assert list(recorder.traces) == ["t"]


async def test_the_timeline_says_how_many_events_it_omits() -> None:
    first, second = node(echo, "a"), node(echo, "b")
    flow = create(first.to(second), second.to())
    app = create_app(flow)
    app.state.penguiflow.recorder.max_events = 2
    async with running(flow), asgi_client(app) as client:
        await flow.emit(msg("x", "long"))
        await within(flow.fetch(trace_id="long"))
        timeline = (await client.get("/api/traces/long")).json()
    assert timeline["omitted"] == 2 and len(timeline["events"]) == 2


@pytest.mark.parametrize(("name", "value"), [("max_traces", 0), ("max_events", True)])
def test_bounds_are_checked(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{name} must be an int >= 1, got {value!r}"):
        Recorder(keep_traces=True, **{name: value})  # type: ignore[arg-type]


def test_rates_span_the_window() -> None:
    now = [100.0]
    meter = RateMeter(clock=lambda: now[0])
    assert meter.rates({"a": 10}) == {"a": 0.0}  # one sample: no rate yet
    now[0] += 2.0
    assert meter.rates({"a": 20, "b": 4}) == {"a": 5.0, "b": 2.0}
    now[0] += 2.0
    assert meter.rates({"a": 30, "b": 4}) == {"a": 5.0, "b": 1.0}
    now[0] += RATE_WINDOW_S  # the first two samples fall out of the window
    assert meter.rates({"a": 30, "b": 4}) == {"a": 0.0, "b": 0.0}


async def test_an_unbounded_floe_has_no_capacity() -> None:
    flow = create(node(echo, "a").to(), queue_maxsize=0)
    app = create_app(flow)
    async with asgi_client(app) as client:
        stats = (await client.get("/api/stats")).json()
    assert stats["nodes"]["a"]["queue_capacity"] is None
