"""``penguiflow recover``: take over a flow's unfinished traces in a store and finish them.

After a crash, the traces a flow's process left running (and that no live process holds: a
dead process's lease expires ``lease_ttl_s``, 10 s, after its last heartbeat; a process
that closed its store ended its lease) are sent again, with their trace ids, to the nodes
they first went to. The command fetches what they deliver, printing it as ``run`` does
(without ``line``), waits until every one of them has ended, and sums up on stderr.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from ._ends import TraceEnds
from ._output import Failures, Reporter
from ._run import plural, start_flow, with_store
from ._stores import describe_url, opened
from ._target import Target, load_target

if TYPE_CHECKING:
    from .._runtime.flow import PenguiFlow

__all__ = ["recover"]


@dataclass(slots=True)
class _Outcome:
    """What the recovered traces did."""

    taken: int = 0
    """Traces taken over."""
    delivered: set[str | None] = field(default_factory=set)
    """Traces that delivered an item."""
    errors: set[str | None] = field(default_factory=set)
    """Traces that delivered a ``FlowError``."""


@click.command(short_help="Finish the traces a crashed process left in a store.")
@click.argument("target", metavar="MODULE:ATTR")
@click.option("--store", "store_url", metavar="URL", required=True, help="The flow's store.")
def recover(target: str, store_url: str) -> int:
    """Finish the flow's traces that a crashed process left unfinished in the store.

    What they deliver is printed on stdout as by run; a summary goes to stderr. The exit
    status is 1 when a recovered trace failed.
    """
    loaded = load_target(target)
    reporter = Reporter(sys.stdout, sys.stderr, progress=False)
    failures = Failures()
    outcome = asyncio.run(_recover(target, loaded, store_url, reporter, failures))
    failed = {trace for trace in failures.by_trace if trace is not None} | outcome.errors
    # A trace that is never heard of again could not be sent (its nodes are gone).
    unsent = max(0, outcome.taken - len(failures.seen | outcome.delivered))
    for trace_id, errors in failures.by_trace.items():
        if trace_id not in outcome.errors:
            for error in errors:
                reporter.error(None, trace_id, error)
    count = len(failed) + unsent
    summary = (
        f"recovered {plural(outcome.taken, 'trace')} from {describe_url(store_url)}: "
        f"{outcome.taken - count} finished, {count} failed"
    )
    if unsent:
        summary += f" ({unsent} could not be sent again: see the log with --debug)"
    reporter.note(summary)
    return 1 if count else 0


async def _recover(
    target: str, loaded: Target, url: str, reporter: Reporter, failures: Failures
) -> _Outcome:
    async with opened(url) as store:
        flow = with_store(loaded.flow, store, target)
        drain = _Drain(flow, reporter)
        flow.add_middleware(failures)
        flow.add_middleware(TraceEnds(flow, every=drain.trace_ended))
        start_flow(flow, loaded.registry, target)
        try:
            drain.outcome.taken = await flow.recover()
            await drain.run()
        finally:
            await flow.stop()
    return drain.outcome


class _Drain:
    """Reports what the recovered traces deliver until every one of them has ended."""

    def __init__(self, flow: PenguiFlow, reporter: Reporter) -> None:
        self.flow = flow
        self.reporter = reporter
        self.outcome = _Outcome()
        self.fetcher: asyncio.Future[Any] | None = None
        self.finishing = False
        """A trace ended in ``fetcher``: it returns that trace's last item (see ``_ends``)."""

    def trace_ended(self, _trace_id: str, task: asyncio.Task[Any] | None) -> None:
        if task is not None and task is self.fetcher:
            self.finishing = True

    async def run(self) -> None:
        flow = self.flow
        done = asyncio.ensure_future(flow.wait_recovered())
        fetcher = self.fetcher = asyncio.ensure_future(flow.fetch())
        try:
            while True:
                await asyncio.wait((fetcher, done), return_when=asyncio.FIRST_COMPLETED)
                if not fetcher.done():
                    if not self.finishing:
                        return  # every recovered trace has ended, with nothing left to fetch
                    await asyncio.wait((fetcher,))
                self._report(fetcher.result())
                self.finishing = False
                fetcher = self.fetcher = asyncio.ensure_future(flow.fetch())
        finally:
            for task in (fetcher, done):
                task.cancel()
            await asyncio.wait((fetcher, done))

    def _report(self, item: Any) -> None:
        trace_id = getattr(item, "trace_id", None)
        self.outcome.delivered.add(trace_id)
        if self.reporter.result(None, trace_id, item):
            self.outcome.errors.add(trace_id)
