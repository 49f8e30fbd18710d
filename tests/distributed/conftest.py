"""Fixtures of the distributed tests: a fresh ``redis-server`` per test, on a free loopback
port, with AOF in a temp dir, killed in ``finally``.

Without ``redis-server`` the tests skip, unless ``PENGUIFLOW_REQUIRE_REDIS`` or ``CI`` is set:
then they fail, so that CI cannot pass with them skipped (``.ci/run`` installs the server).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .servers import REDIS_SERVER, SECRET, RedisServer, WorkerPool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


def _required() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() not in {"", "0", "false", "no"}
        for name in ("PENGUIFLOW_REQUIRE_REDIS", "CI")
    )


def need_redis_server() -> None:
    """Skip the test without ``redis-server`` (fail it where the server is required)."""
    if not Path(REDIS_SERVER).exists():
        if _required():
            pytest.fail(f"redis-server not found at {REDIS_SERVER}")
        pytest.skip("redis-server is not installed")


def _server(directory: Path, password: str | None = None) -> Iterator[RedisServer]:
    need_redis_server()
    server = RedisServer(directory, password=password)
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _server(tmp_path)


@pytest.fixture
def secured_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """The same, with the password ``SECRET`` (``requirepass``)."""
    yield from _server(tmp_path, SECRET)


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    """Worker processes the test starts, reaped at its end."""
    workers = WorkerPool()
    try:
        yield workers
    finally:
        await workers.close()
