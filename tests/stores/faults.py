"""Helpers for the fault tests: wait on a condition with a deadline, and time what happens."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

POLL_S = 0.01
"""How often a condition is checked again: this paces the polling, it orders nothing."""


async def eventually(condition: Callable[[], T], *, within_s: float, what: str) -> T:
    """Return the first truthy value of ``condition()``, checked every ``POLL_S``.

    Raises:
        AssertionError: ``within_s`` seconds passed first; the message says ``what``.
    """
    deadline = time.monotonic() + within_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        await asyncio.sleep(POLL_S)


class Stopwatch:
    """Seconds since it was made, on the monotonic clock."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.start
