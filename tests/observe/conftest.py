"""The observer tests' own leak check: no metrics server thread outlives its test."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def _no_server_threads() -> Iterator[None]:
    """Fail a test that leaves a thread of ``serve_metrics`` alive: ``close()`` joins them."""
    yield
    alive = [t.name for t in threading.enumerate() if t.name.startswith("penguiflow:metrics")]
    assert not alive, f"threads left: {alive}"
