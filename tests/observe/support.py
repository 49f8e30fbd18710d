"""Helpers for the observer tests: read a registry or an endpoint as real scrapers do, and
build events the way the runtime does."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.helpers import TIMEOUT
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from penguiflow.metrics import FlowEvent

if TYPE_CHECKING:
    from email.message import Message

    from prometheus_client import CollectorRegistry

# No proxy, whatever the environment says: the endpoints under test are on loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Samples:
    """Parsed exposition text: sample values looked up by name and labels."""

    def __init__(self, text: str) -> None:
        self.values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.families: set[str] = set()
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            for sample in family.samples:
                self.values[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def get(self, name: str, **labels: str) -> float | None:
        """The value of the sample ``name`` with exactly ``labels``, or None if absent."""
        return self.values.get((name, frozenset(labels.items())))

    def __call__(self, name: str, **labels: str) -> float:
        """The value of the sample ``name`` with exactly ``labels``; it must exist."""
        value = self.get(name, **labels)
        assert value is not None, f"no sample {name}{labels}"
        return value


def read(registry: CollectorRegistry) -> Samples:
    """Collect ``registry`` in the text format and parse it back."""
    return Samples(generate_latest(registry).decode())


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes


async def http_get(port: int, path: str, *, method: str = "GET", accept: str = "") -> Reply:
    """Request ``path`` from 127.0.0.1:``port`` with urllib, in a thread."""

    def request() -> Reply:
        headers = {"Accept": accept} if accept else {}
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", method=method, headers=headers
        )
        try:
            with _OPENER.open(req, timeout=TIMEOUT) as response:
                return Reply(response.status, _lower(response.headers), response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, _lower(error.headers), error.read())

    return await asyncio.wait_for(asyncio.to_thread(request), TIMEOUT)


def _lower(headers: Message) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def event(event_type: str, node_name: str, trace_id: str | None = None, **extra: Any) -> FlowEvent:
    """An event about ``node_name`` as the runtime builds it, at ``ts=1.0``, attempt 0."""
    return FlowEvent(
        event_type=event_type,
        ts=1.0,
        node_name=node_name,
        node_id=node_name,
        trace_id=trace_id,
        attempt=0,
        latency_ms=0.0 if event_type.startswith("node_") else None,
        queue_depth_in=0,
        queue_depth_out=0,
        outgoing_edges=1,
        queue_maxsize=64,
        trace_pending=None if trace_id is None else 1,
        trace_inflight=0 if trace_id is None else 1,
        trace_cancelled=False,
        extra=extra,
    )
