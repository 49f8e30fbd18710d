"""``penguiflow serve MODULE:ATTR``: run a flow in this process and serve its live page.

The flow is started with ``run()`` (with the registry its factory gives, if any) and the page
is served on ``--host``/``--port`` until SIGINT or SIGTERM; then the server closes, the flow
stops and the store closes, in that order.

``--store URL`` names a store (``sqlite:///PATH``, ``sqlite:////abs/path``, or
``postgresql://...``): the page reads traces and histories from it, and a flow built without
a store of its own journals to it, as with ``penguiflow run --store``.

Listening on an address that is not loopback needs ``--token`` (or
``$PENGUIFLOW_WEB_TOKEN``): the page, the API and the stream then require it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING, Any

import click

from .._sanitize import PAGE_MAX_CHARS
from ..stores import StoreError
from ._errors import CommandError
from ._run import with_store
from ._stores import open_store
from ._target import load_function, load_target

if TYPE_CHECKING:
    from .._runtime.flow import PenguiFlow
    from ..registry import ModelRegistry
    from ..stores._base import StoreBase

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
def serve_command(
    target: str,
    host: str,
    port: int,
    store_url: str | None,
    token: str | None,
    control: bool,
    redact: str | None,
    max_chars: int,
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
    flow, registry, _types = load_target(target)
    store = open_store(store_url) if store_url else None
    if store is not None and flow._state_store is None:
        flow = with_store(flow, store, target)
    try:
        asyncio.run(_serve(flow, registry, store, host, port, token or None, control, shown))
    except (OSError, RuntimeError, TimeoutError, StoreError) as error:
        raise CommandError(f"serve {target}: {error}", status=1) from error


async def _serve(
    flow: PenguiFlow,
    registry: ModelRegistry | None,
    store: StoreBase | None,
    host: str,
    port: int,
    token: str | None,
    control: bool,
    shown: dict[str, Any],
) -> None:
    from ..web import serve_flow

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if store is not None:
            await stack.enter_async_context(store)
        flow.run(registry=registry)
        stack.push_async_callback(flow.stop)
        server = await serve_flow(
            flow, host=host, port=port, store=store, token=token, control=control, **shown
        )
        stack.push_async_callback(server.close)
        click.echo(f"penguiflow serve: {server.url}", nl=True)
        if token:
            click.echo(
                f"open {server.url}?token=<token> once in a browser, or send "
                "'Authorization: Bearer <token>'"
            )
        await stop.wait()
    click.echo("penguiflow serve: stopped")
