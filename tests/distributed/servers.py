"""Real ``redis-server`` processes on loopback for the distributed tests, and worker processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO = Path(__file__).resolve().parent.parent.parent
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SECRET = "s3cret-pw"
"""The password of the ``secured_redis_server`` fixture: tests assert it appears nowhere."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` with AOF (everysec) and noeviction, in its own directory."""

    def __init__(
        self, directory: Path, *, password: str | None = None, extra: Sequence[str] = ()
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.password = password
        self.extra = list(extra)
        """More ``--option value`` arguments (later ones override earlier ones)."""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self) -> None:
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with self.open_socket() as sock:
                    auth = f"AUTH {self.password}\r\n" if self.password else ""
                    sock.sendall(f"{auth}PING\r\n".encode())
                    data = sock.recv(100)
                    if b"PONG" in data:
                        return
            except OSError:
                pass
            time.sleep(0.02)  # polling a child process that has no readiness signal
        raise RuntimeError("redis-server did not start")

    def open_socket(self) -> socket.socket:
        """A connection to the server (for the readiness probe)."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=0.2)

    def shutdown(self) -> None:
        """SHUTDOWN: the server writes its AOF and exits."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)  # redis-server does SHUTDOWN on SIGTERM
        self.process.wait(10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def worker_command(target: str, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "penguiflow", "worker", target, "--redis", url, *extra]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.pop("PYTHONASYNCIODEBUG", None)
    return env


class Worker:
    """A ``penguiflow worker`` subprocess; ``ready()`` waits for its ready line."""

    def __init__(self, target: str, url: str, *extra: str) -> None:
        self.command = worker_command(target, url, *extra)
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []

    async def start(self) -> Worker:
        self.process = await asyncio.create_subprocess_exec(
            *self.command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=child_env(),
            cwd=str(REPO),
        )
        await self.wait_line("ready")
        return self

    async def wait_line(self, text: str, timeout: float = 20.0) -> str:
        assert self.process is not None and self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise RuntimeError(f"worker exited: {self.lines[-20:]}")
                line = raw.decode().rstrip()
                self.lines.append(line)
                if text in line:
                    return line

    async def drain_output(self) -> None:
        """Read what is left of the output (so that the pipe never fills)."""
        assert self.process is not None and self.process.stdout is not None
        while raw := await self.process.stdout.readline():
            self.lines.append(raw.decode().rstrip())

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    async def reap(self) -> None:
        if self.process is not None:
            self.kill()
            await self.process.wait()


class WorkerPool:
    """``penguiflow worker`` processes, reaped at the end whatever happens (the ``pool``
    fixture)."""

    def __init__(self) -> None:
        self.workers: list[Worker] = []
        self.readers: set[asyncio.Task[None]] = set()

    async def start(self, target: str, url: str, *extra: str) -> Worker:
        worker = Worker(target, url, *extra)
        self.workers.append(worker)  # before it starts: reaped even if the start fails
        await worker.start()
        self.readers.add(asyncio.create_task(worker.drain_output()))
        return worker

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.process is not None and w.process.returncode is None]

    async def close(self) -> None:
        for worker in self.workers:
            await worker.reap()
        if self.readers:
            await asyncio.wait(self.readers)
