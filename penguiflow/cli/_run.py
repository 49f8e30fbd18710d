"""``penguiflow run``: feed a flow JSON lines, and print what it delivers as JSON lines.

How a line becomes a message is ``_input``'s job; how results are written, ``_output``'s;
how the command hears that a trace has ended, ``_ends``'. Here: run the flow (journaled to
``--store`` if given), and drive each line's trace from emit to end, at most
``--concurrency`` at once.

Design note (one trace): a line is emitted as a roundtrip (``emit(..., trace_id=T)``),
which subscribes the trace before the message goes in, so that an item the flow delivers
without a trace id of its own is still tagged for the trace; then the command fetches one
item after another until the trace has ended. Two lines that give the same trace id run
one after the other (the roundtrip lock of the trace).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from typing import TYPE_CHECKING, Any, Final, TextIO

import click

from ..errors import FlowErrorCode, TraceCancelled
from ._ends import TraceEnds
from ._errors import CommandError
from ._input import Entry, LineError, entry_for, read_lines
from ._output import Failures, Reporter, is_terminal
from ._stores import opened
from ._target import Target, describe_error, load_target

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from .._runtime.flow import PenguiFlow
    from ..registry import ModelRegistry
    from ..stores._base import StoreBase

__all__ = [
    "DEFAULT_CONCURRENCY",
    "Runner",
    "feed_options",
    "plural",
    "run",
    "start_flow",
    "with_store",
]

DEFAULT_CONCURRENCY: Final = 16
"""Traces in flight at once, by default."""


class Runner:
    """Feeds input lines to a running flow and reports each trace, ``concurrency`` at once.

    Args:
        flow: The flow, running, with ``failures`` among its middlewares.
        entry: How lines become messages; untraced entries run one line at a time.
        reporter: Where results, errors and notes go.
        failures: The middleware that keeps failed nodes' errors.
        ends: The middleware that tells when traces end.
        concurrency: The most traces in flight at once.
    """

    def __init__(
        self,
        flow: PenguiFlow,
        entry: Entry,
        reporter: Reporter,
        failures: Failures,
        ends: TraceEnds,
        *,
        concurrency: int,
    ) -> None:
        self.flow = flow
        self.entry = entry
        self.reporter = reporter
        self.failures = failures
        self.ends = ends
        self.concurrency = concurrency if entry.traced else 1

    async def feed(self, lines: AsyncGenerator[tuple[int, str], None]) -> None:
        """Run every line of ``lines``; return once each one's trace has ended.

        A line that is not valid input is reported and skipped; the others run.
        """
        slots = asyncio.Semaphore(self.concurrency)
        async with asyncio.TaskGroup() as group, contextlib.aclosing(lines) as numbered:
            async for number, text in numbered:
                try:
                    item, trace_id = self.entry.decode(text)
                except LineError as exc:
                    self.reporter.invalid(number, str(exc))
                    continue
                await slots.acquire()
                group.create_task(self._line(number, item, trace_id, slots.release))

    async def _line(
        self, number: int, item: Any, trace_id: str | None, done: Callable[[], None]
    ) -> None:
        try:
            if trace_id is None:
                failed = await self._untraced(number, item)
            else:
                failed = await self._traced(number, item, trace_id)
        except Exception as exc:
            code = (
                FlowErrorCode.TRACE_CANCELLED.value
                if isinstance(exc, TraceCancelled)
                else "RUNTIME_ERROR"
            )
            error = {"code": code, "message": describe_error(exc)}
            self.reporter.error(number, trace_id, error)
            self.failures.take(trace_id)
            failed = True
        finally:
            done()
        self.reporter.ended(failed=failed)

    async def _traced(self, number: int, item: Any, trace_id: str) -> bool:
        """Emit one traced item, report what its trace delivers until it ends."""
        flow, reporter, ends = self.flow, self.reporter, self.ends
        trip = _Roundtrip()
        ends.watch(trace_id, trip.trace_ended)
        ending = asyncio.ensure_future(trip.ended.wait())
        errors_delivered = False
        try:
            await flow.emit(item, self.entry.node, trace_id=trace_id)
            ends.attach(trace_id)
            trip.fetcher = asyncio.ensure_future(flow.fetch(trace_id=trace_id))
            while True:
                await asyncio.wait((trip.fetcher, ending), return_when=asyncio.FIRST_COMPLETED)
                if not trip.fetcher.done():
                    break  # ended elsewhere: nothing left to fetch
                errors_delivered |= reporter.result(number, trace_id, trip.fetcher.result())
                if trip.over:
                    break
                trip.fetcher = asyncio.ensure_future(flow.fetch(trace_id=trace_id))
        finally:
            ends.forget(trace_id)
            await _cancelled(ending, *(() if trip.fetcher is None else (trip.fetcher,)))
        return self._failed(number, trace_id, errors_delivered=errors_delivered)

    async def _untraced(self, number: int, item: Any) -> bool:
        """Emit one item without a trace id; its result is the next item the flow delivers."""
        flow = self.flow
        failing = self.failures.watch(None)
        await flow.emit(item, self.entry.node)
        fetcher = asyncio.ensure_future(flow.fetch())
        failed = asyncio.ensure_future(failing.wait())
        errors_delivered = False
        try:
            await asyncio.wait((fetcher, failed), return_when=asyncio.FIRST_COMPLETED)
            if fetcher.done():
                errors_delivered = self.reporter.result(number, None, fetcher.result())
        finally:
            await _cancelled(fetcher, failed)
        return self._failed(number, None, errors_delivered=errors_delivered)

    def _failed(self, number: int, trace_id: str | None, *, errors_delivered: bool) -> bool:
        """Report the trace's failures the flow did not deliver; return whether it failed."""
        recorded = self.failures.take(trace_id)
        if not errors_delivered:
            for error in recorded:
                self.reporter.error(number, trace_id, error)
        return errors_delivered or bool(recorded)


class _Roundtrip:
    """One trace's fetching: the fetch in progress, and whether the trace has ended."""

    __slots__ = ("ended", "fetcher", "over")

    def __init__(self) -> None:
        self.fetcher: asyncio.Future[Any] | None = None
        """The fetch in progress, once the trace is emitted."""
        self.over = False
        """The trace has ended."""
        self.ended = asyncio.Event()
        """The trace has ended elsewhere than in ``fetcher``: nothing is left to fetch."""

    def trace_ended(self, task: asyncio.Task[Any] | None) -> None:
        """The trace ended in ``task``: in ``fetcher``, that fetch returns its last item."""
        self.over = True
        if task is not self.fetcher:
            self.ended.set()


async def _cancelled(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` and wait until they are done (their outcome is not wanted)."""
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)


def with_store(flow: PenguiFlow, store: StoreBase, target: str) -> PenguiFlow:
    """``flow`` rebuilt to keep its state in ``store``.

    Raises:
        CommandError: the flow has a store of its own.
    """
    try:
        return flow._with_state_store(store)
    except ValueError as exc:
        raise CommandError(f"{target}: {exc}; build it without one to use --store") from None


def start_flow(flow: PenguiFlow, registry: ModelRegistry | None, target: str) -> None:
    """``flow.run(registry=registry)``.

    Raises:
        CommandError: the flow refuses to run (a node that validates is not registered).
    """
    try:
        flow.run(registry=registry)
    except RuntimeError as exc:
        raise CommandError(f"{target}: cannot run the flow: {exc}") from None


def feed_options(input_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-i``, ``--to``, ``--concurrency`` and ``--tenant``: how a command feeds a flow lines."""

    def add(command: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option(
                "--input-file",
                "-i",
                type=click.File("r", encoding="utf-8", errors="replace"),
                help=input_help,
            ),
            click.option("--to", metavar="NODE", help="Send the input to this entry node only."),
            click.option(
                "--concurrency",
                type=click.IntRange(min=1),
                default=DEFAULT_CONCURRENCY,
                show_default=True,
                help="Traces in flight at once.",
            ),
            click.option(
                "--tenant",
                default="default",
                show_default=True,
                help="The tenant of the Messages built from plain JSON payloads.",
            ),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return add


@click.command(short_help="Feed a flow JSON lines; print what it delivers.")
@click.argument("target", metavar="MODULE:ATTR")
@click.option("--store", "store_url", metavar="URL", help="Journal the flow to this store.")
@feed_options("JSON lines to feed the flow (default: stdin).")
def run(
    target: str,
    input_file: TextIO | None,
    store_url: str | None,
    to: str | None,
    concurrency: int,
    tenant: str,
) -> int:
    """Feed the flow one JSON value per input line; print what it delivers as JSON lines.

    Each line is one trace. Each item the trace delivers is printed on stdout as
    {"line": N, "trace_id": T, "payload": ...}, and each failure as {"line": N, "trace_id":
    T, "error": {...}}. A line that is not valid input is reported on stderr and skipped.
    The exit status is 1 when a trace failed or a line was skipped.
    """
    loaded = load_target(target)
    entry = entry_for(loaded.flow, loaded.registry, to=to, tenant=tenant)
    stream = input_file or _stdin()
    reporter = Reporter(sys.stdout, sys.stderr, progress=is_terminal(sys.stderr))
    try:
        asyncio.run(
            _run(
                target,
                loaded,
                entry,
                stream,
                reporter,
                store_url=store_url,
                concurrency=concurrency,
            )
        )
    finally:
        reporter.close()
    tally = reporter.tally
    if not (tally.failed or tally.invalid):
        return 0
    reporter.note(
        f"{tally.failed} of {plural(tally.traces, 'trace')} failed, "
        f"{plural(tally.invalid, 'input line')} skipped"
    )
    return 1


def plural(count: int, noun: str) -> str:
    """``1 trace``, ``2 traces``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _stdin() -> TextIO:
    """Standard input, read as UTF-8 with undecodable bytes replaced (then invalid JSON)."""
    stream = sys.stdin
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(encoding="utf-8", errors="replace")
    return stream


async def _run(
    target: str,
    loaded: Target,
    entry: Entry,
    stream: TextIO,
    reporter: Reporter,
    *,
    store_url: str | None,
    concurrency: int,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        flow = loaded.flow
        if store_url is not None:
            store = await stack.enter_async_context(opened(store_url))
            flow = with_store(flow, store, target)
        failures, ends = Failures(), TraceEnds(flow)
        flow.add_middleware(failures)
        flow.add_middleware(ends)
        start_flow(flow, loaded.registry, target)
        stack.push_async_callback(flow.stop)
        runner = Runner(flow, entry, reporter, failures, ends, concurrency=concurrency)
        await runner.feed(read_lines(stream, buffer=2 * concurrency))
