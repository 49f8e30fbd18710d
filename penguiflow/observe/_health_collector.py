"""A Prometheus collector that turns ``flow.health()`` into gauges at scrape time.

Nothing is recorded per event: the snapshot is taken when the registry is collected, so the
gauges cost a flow nothing between scrapes.

``flow.health()`` reads the flow's live state and must run on the flow's event loop. A scrape
on that loop (``serve_metrics`` answers there) calls it directly; a scrape from another thread
(for example ``prometheus_client.start_http_server``) asks the loop to take the snapshot and
waits for it, for at most ``SNAPSHOT_TIMEOUT_S``. ``call_on_loop`` is that hand-over, shared
with ``serve_metrics``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import TYPE_CHECKING, Final, TypeVar, final

from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..core import PenguiFlow
    from ..health import FlowHealth

__all__ = ["SNAPSHOT_TIMEOUT_S", "HealthCollector", "call_on_loop"]

T = TypeVar("T")

SNAPSHOT_TIMEOUT_S: Final = 5.0
"""How long a scrape from another thread waits for the flow's loop to take the snapshot."""

_HEALTH_STATUSES: Final = ("ok", "degraded", "failing")
_BREAKER_STATES: Final = ("closed", "open", "half_open")

logger: Final = logging.getLogger("penguiflow.observe")


@final
class HealthCollector:
    """Collects gauges from one flow's ``health()`` snapshot.

    Metric names start with ``namespace``:

    - ``flow_running``: 1 while the flow runs;
    - ``flow_health{status}``: 1 for the current status (``ok``, ``degraded``, ``failing``);
    - ``traces_in_flight``: traces with something pending;
    - ``floe_depth{source, target}`` and ``floe_capacity{source, target}`` (0: unbounded);
    - ``node_workers{node}`` and ``node_workers_alive{node}``;
    - ``breaker_state{node, state}``: 1 for the current state, for nodes with a breaker.
    """

    def __init__(self, flow: PenguiFlow, namespace: str = "penguiflow") -> None:
        self._flow = flow
        self._prefix = f"{namespace}_" if namespace else ""

    def describe(self) -> list[GaugeMetricFamily]:
        """Return the gauge families without samples.

        The registry checks these names for clashes, instead of collecting (and so reading
        the flow's health) at registration.
        """
        return list(self._families().values())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the gauges of a fresh health snapshot.

        If the flow's loop does not answer within ``SNAPSHOT_TIMEOUT_S``, a warning is logged
        and this scrape has no health gauges.
        """
        health = self._snapshot()
        if health is None:
            return
        families = self._families()
        families["running"].add_metric([], 1.0 if health.running else 0.0)
        for status in _HEALTH_STATUSES:
            families["health"].add_metric([status], 1.0 if health.status == status else 0.0)
        families["traces"].add_metric([], float(health.traces_in_flight))
        for floe in health.floes:
            labels = [floe.source, floe.target]
            families["depth"].add_metric(labels, float(floe.depth))
            families["capacity"].add_metric(labels, float(floe.capacity))
        for node in health.nodes:
            families["workers"].add_metric([node.name], float(node.workers))
            families["alive"].add_metric([node.name], float(node.workers_alive))
            if node.breaker is not None:
                for state in _BREAKER_STATES:
                    value = 1.0 if node.breaker == state else 0.0
                    families["breaker"].add_metric([node.name, state], value)
        yield from families.values()

    def _families(self) -> dict[str, GaugeMetricFamily]:
        p = self._prefix
        floe = ("source", "target")
        return {
            "running": GaugeMetricFamily(f"{p}flow_running", "1 while the flow runs"),
            "health": GaugeMetricFamily(
                f"{p}flow_health", "1 for the flow's current health status", labels=("status",)
            ),
            "traces": GaugeMetricFamily(f"{p}traces_in_flight", "Traces with something pending"),
            "depth": GaugeMetricFamily(f"{p}floe_depth", "Items queued on a floe", labels=floe),
            "capacity": GaugeMetricFamily(
                f"{p}floe_capacity", "A floe's bound (0: unbounded)", labels=floe
            ),
            "workers": GaugeMetricFamily(f"{p}node_workers", "Workers per node", labels=("node",)),
            "alive": GaugeMetricFamily(
                f"{p}node_workers_alive", "Workers whose task is running", labels=("node",)
            ),
            "breaker": GaugeMetricFamily(
                f"{p}breaker_state",
                "1 for the current circuit breaker state",
                labels=("node", "state"),
            ),
        }

    def _snapshot(self) -> FlowHealth | None:
        """Take ``flow.health()`` on the flow's loop; None if that loop did not answer."""
        flow = self._flow
        # The worker tasks (a contract attribute, spec 7.17) tell which loop runs the flow.
        workers = flow._tasks
        loop = workers[0].get_loop() if workers else None
        if loop is None or not loop.is_running() or _running_loop() is loop:
            return flow.health()
        try:
            return call_on_loop(loop, flow.health, SNAPSHOT_TIMEOUT_S)
        except TimeoutError as error:
            logger.warning(
                "health_snapshot_unavailable",
                extra={"event": "health_snapshot_unavailable", "exception": repr(error)},
            )
            return None


def call_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T], timeout_s: float) -> T:
    """Call ``fn()`` on ``loop``, from a thread other than the loop's, and return its result.

    The calling thread blocks until the loop has run ``fn``. If that takes longer than
    ``timeout_s``, the call is withdrawn (unless the loop has started it: then it finishes
    unseen) and ``TimeoutError`` raised.

    Raises:
        TimeoutError: ``loop`` is blocked, busy or closed: it did not run ``fn`` in time.
        Exception: whatever ``fn`` raised.
    """
    answer: concurrent.futures.Future[T] = concurrent.futures.Future()

    def call() -> None:
        if not answer.set_running_or_notify_cancel():
            return  # the caller gave up waiting
        try:
            answer.set_result(fn())
        except Exception as error:
            answer.set_exception(error)

    try:
        loop.call_soon_threadsafe(call)
    except RuntimeError as error:  # the loop closed after the caller chose it
        raise TimeoutError(f"event loop {loop!r} is closed") from error
    try:
        return answer.result(timeout=timeout_s)
    except TimeoutError:
        answer.cancel()
        raise


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
