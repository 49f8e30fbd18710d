"""Commits of one worker process, batched: every commit queued meanwhile goes in one script.

Design note: one commit per round trip caps a worker at about 2k messages a second; the
commits that wait while a batch is in flight go together in the next, as one ``COMMIT_MANY``
call (one round trip, one command to build and parse). A script the server forgot (it
restarted) is loaded again and the batch re-sent: ``NOSCRIPT`` means it did not run.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Any, Final

from ._scripts import COMMIT_MANY

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Committer"]

_BATCH: Final = 512

_Pending = tuple[list[str], list[str | int], "asyncio.Future[list[int]]"]


class Committer:
    """Sends queued commits as ``COMMIT_MANY`` calls; owned by the worker that runs ``run``."""

    __slots__ = ("client", "no_script", "queue", "sha", "wake")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.no_script: type[Exception] = importlib.import_module("redis.exceptions").NoScriptError
        self.queue: list[_Pending] = []
        self.wake = asyncio.Event()
        self.sha: str | None = None

    async def commit(self, keys: list[str], args: list[str | int]) -> list[int]:
        """Commit one entry and return its ``{code, index}`` (see ``COMMIT_MANY``).

        ``keys``: input stream, cancel marker, outputs; ``args``: group, consumer, entry id,
        then (maxsize, body) per output.

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
                self.sha = await self.client.script_load(COMMIT_MANY)
            try:
                answers = await self._call(batch)
            except self.no_script:
                self.sha = await self.client.script_load(COMMIT_MANY)
                answers = await self._call(batch)
        except Exception as exc:
            for _keys, _args, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_keys, _args, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result([int(each) for each in answer])

    async def _call(self, batch: Sequence[_Pending]) -> list[Any]:
        """One ``COMMIT_MANY`` for ``batch`` (each commit: keys, then group, consumer, id...)."""
        keys: list[str] = []
        args: list[str | int] = ["", len(batch)]
        for commit_keys, (group, consumer, entry_id, *outputs), _future in batch:
            args[0] = consumer  # one consumer per process
            keys += commit_keys
            args += [group, entry_id, len(commit_keys) - 2, *outputs]
        answers: list[Any] = await self.client.evalsha(self.sha, len(keys), *keys, *args)
        return answers
