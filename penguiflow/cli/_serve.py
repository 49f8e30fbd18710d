"""``penguiflow serve MODULE:ATTR``: run a flow in this process and serve its live page.

The flow is started with ``run()`` (with the registry its factory gives, if any) and the page
is served on ``--host``/``--port`` until SIGINT or SIGTERM; then the server closes, the flow
stops and the store closes, in that order.

``--store URL`` names a store (``sqlite:///PATH``, ``sqlite:////abs/path``, or
``postgresql://...``): the page reads traces and histories from it, and a flow built without
a store of its own journals to it, as with ``penguiflow run --store``.

``--input-file F`` (``-i``) feeds the flow as ``penguiflow run`` does, while the page is up:
one trace per JSON line, results as JSON lines on stdout; the page keeps being served after
the last line, until the signal.

Listening on an address that is not loopback needs ``--token`` (or
``$PENGUIFLOW_WEB_TOKEN``): the page, the API and the stream then require it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING, Any, TextIO

import click

from .._sanitize import PAGE_MAX_CHARS
from ..stores import StoreError
from ._ends import TraceEnds
from ._errors import CommandError
from ._input import entry_for, read_lines
from ._output import Failures, Reporter
from ._run import DEFAULT_CONCURRENCY, Runner, feed_options, plural, start_flow, with_store
from ._stores import open_store
from ._target import load_function, load_target

if TYPE_CHECKING:
    from .._runtime.flow import PenguiFlow
    from ..stores._base import StoreBase
    from ._input import Entry
    from ._target import Target

__all__ = ["serve_command"]


@click.command("serve")
@click.argument("target", metavar="MODULE:ATTR")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8787,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port, printed).",
)
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="Read traces and histories from sqlite:///PATH or postgresql://...",
)
@click.option(
    "--token",
    envvar="PENGUIFLOW_WEB_TOKEN",
    help="Required by the page and the API; needed to listen beyond loopback "
    "[env: PENGUIFLOW_WEB_TOKEN].",
)
@click.option("--control", is_flag=True, help="Let the page cancel traces.")
@click.option(
    "--redact",
    metavar="MODULE:FUNC",
    help="A function str -> str applied to every payload, event detail and error shown.",
)
@click.option(
    "--max-chars",
    type=click.IntRange(min=32),
    default=PAGE_MAX_CHARS,
    show_default=True,
    help="Cut longer values on the page.",
)
@feed_options("JSON lines to feed the flow once the page is up, as with penguiflow run.")
def serve_command(
    target: str,
    host: str,
    port: int,
    store_url: str | None,
    token: str | None,
    control: bool,
    redact: str | None,
    max_chars: int,
    input_file: TextIO | None,
    to: str | None,
    concurrency: int,
    tenant: str,
) -> None:
    """Run the flow MODULE:ATTR (a flow or a zero-argument factory) and serve its live page."""
    from ..web import TOKEN_ENV
    from ..web._security import is_loopback

    if not token and not is_loopback(host):
        raise CommandError(
            f"--host {host} is not a loopback address: give --token or set {TOKEN_ENV}"
        )
    shown = {
        "redact": None if redact is None else load_function(redact, option="--redact"),
        "max_payload_chars": max_chars,
    }
    loaded = load_target(target)
    store = open_store(store_url) if store_url else None
    if store is not None and loaded.flow._state_store is None:
        loaded = loaded._replace(flow=with_store(loaded.flow, store, target))
    feed = None
    if input_file is not None:
        feed = _Feed(input_file, entry_for(loaded.flow, loaded.registry, to=to, tenant=tenant))
        feed.attach(loaded.flow, concurrency)
    page = {"host": host, "port": port, "token": token or None, "control": control, **shown}
    try:
        asyncio.run(_serve(target, loaded, store, page, feed))
    except (OSError, RuntimeError, TimeoutError, StoreError) as error:
        raise CommandError(f"serve {target}: {error}", status=1) from error


class _Feed:
    """``--input-file``: the lines, and what ``penguiflow run`` uses to drive them."""

    def __init__(self, stream: TextIO, entry: Entry) -> None:
        self.stream = stream
        self.entry = entry
        self.reporter = Reporter(sys.stdout, sys.stderr, progress=False)
        self.failures = Failures()
        self.concurrency = DEFAULT_CONCURRENCY
        self.ends: TraceEnds | None = None

    def attach(self, flow: PenguiFlow, concurrency: int) -> None:
        """Add the middlewares the runner needs (before the flow runs)."""
        self.concurrency = concurrency
        self.ends = TraceEnds(flow)
        flow.add_middleware(self.failures)
        flow.add_middleware(self.ends)

    async def run(self, flow: PenguiFlow) -> None:
        """Feed every line; then say how many traces failed (on stderr)."""
        assert self.ends is not None, "attach() first"
        runner = Runner(
            flow, self.entry, self.reporter, self.failures, self.ends, concurrency=self.concurrency
        )
        await runner.feed(read_lines(self.stream, buffer=2 * self.concurrency))
        tally = self.reporter.tally
        self.reporter.note(
            f"fed {plural(tally.traces, 'trace')}: {tally.failed} failed, "
            f"{plural(tally.invalid, 'input line')} skipped"
        )


async def _serve(
    target: str,
    loaded: Target,
    store: StoreBase | None,
    page: dict[str, Any],
    feed: _Feed | None,
) -> None:
    from ..web import serve_flow

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    flow = loaded.flow
    async with contextlib.AsyncExitStack() as stack:
        if store is not None:
            await stack.enter_async_context(store)
        start_flow(flow, loaded.registry, target)
        stack.push_async_callback(flow.stop)
        server = await serve_flow(flow, store=store, **page)
        stack.push_async_callback(server.close)
        click.echo(f"penguiflow serve: {server.url}", nl=True)
        if page["token"]:
            click.echo(
                f"open {server.url}?token=<token> once in a browser, or send "
                "'Authorization: Bearer <token>'"
            )
        if feed is not None:
            feeding = asyncio.ensure_future(feed.run(flow))
            stack.push_async_callback(_stop_feeding, feeding)
        await stop.wait()
    click.echo("penguiflow serve: stopped")


async def _stop_feeding(feeding: asyncio.Future[None]) -> None:
    """Cancel the feed if it is still going, and report how it ended if it failed."""
    feeding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await feeding
