"""Commits of one worker process, batched: every commit queued meanwhile goes in one pipeline.

Design note: one commit per round trip caps a worker at about 2k messages a second; the
scripts are independent, so the ones that wait while a pipeline is in flight go together in
the next. A script the server forgot (it restarted) is loaded again and its commits re-sent:
``NOSCRIPT`` means it did not run.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Any, Final

from ._scripts import COMMIT

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Committer"]

_BATCH: Final = 512

_Pending = tuple[list[str], list[str | int], "asyncio.Future[list[int]]"]


class Committer:
    """Sends ``COMMIT`` scripts in pipelines; owned by the worker that runs ``run``."""

    __slots__ = ("client", "no_script", "queue", "sha", "wake")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.no_script: type[Exception] = importlib.import_module("redis.exceptions").NoScriptError
        self.queue: list[_Pending] = []
        self.wake = asyncio.Event()
        self.sha: str | None = None

    async def commit(self, keys: list[str], args: list[str | int]) -> list[int]:
        """Run ``COMMIT`` with ``keys`` and ``args`` and return its answer.

        Raises:
            redis.ConnectionError: the server went away (the commit may or may not have run;
                running it again is safe, see ``_scripts``).
        """
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self.queue.append((keys, args, future))
        self.wake.set()
        return await future

    async def run(self) -> None:
        """Send queued commits until cancelled."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch, self.queue = self.queue[:_BATCH], self.queue[_BATCH:]
                await self._send(batch)

    async def _send(self, batch: Sequence[_Pending]) -> None:
        try:
            if self.sha is None:
                self.sha = await self.client.script_load(COMMIT)
            answers = await self._pipeline(batch)
            if any(isinstance(answer, self.no_script) for answer in answers):
                self.sha = await self.client.script_load(COMMIT)
                answers = await self._pipeline(batch)
        except Exception as exc:
            for _keys, _args, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_keys, _args, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result([int(each) for each in answer])

    async def _pipeline(self, batch: Sequence[_Pending]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for keys, args, _future in batch:
                pipe.evalsha(self.sha, len(keys), *keys, *args)
            answers: list[Any] = await pipe.execute(raise_on_error=False)
        return answers
