"""``penguiflow serve MODULE:ATTR``: run a flow in this process and serve its live page.

The flow is started with ``run()`` (with the registry its factory gives, if any) and the page
is served on ``--host``/``--port`` until SIGINT or SIGTERM; then the server closes, the flow
stops and the store closes, in that order.

``--store URL`` names a store to read traces and histories from: ``sqlite:///PATH`` (a
relative path; ``sqlite:////abs/path`` for an absolute one) or ``postgresql://...``. It is
opened for reading; the flow writes to its own ``state_store``, if it has one.

Listening on an address that is not loopback needs ``--token`` (or
``$PENGUIFLOW_WEB_TOKEN``): the page, the API and the stream then require it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

import click

from ..stores import StoreError
from ._redis import load_target

if TYPE_CHECKING:
    from .._runtime.flow import PenguiFlow
    from ..registry import ModelRegistry
    from ..stores._base import StoreBase

__all__ = ["open_store", "serve_command"]

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")


def open_store(url: str) -> StoreBase:
    """Build (not yet open) the store ``url`` names.

    Raises:
        ValueError: ``url`` is neither ``sqlite:///PATH`` nor ``postgresql://...``; the
            message shows the scheme only (a URL may hold a password).
    """
    if url.startswith(_SQLITE):
        path = url[len(_SQLITE) :]
        if not path:
            raise ValueError("--store sqlite:///PATH needs a path after sqlite:///")
        from ..stores import SQLiteStore

        return SQLiteStore(path)
    if url.startswith(_POSTGRES):
        from ..stores import PostgresStore

        return PostgresStore(url)
    scheme = url.partition("://")[0] if "://" in url else url[:20]
    raise ValueError(
        f"--store must be sqlite:///PATH or postgresql://USER@HOST/DB, got a URL of scheme "
        f"{scheme!r}"
    )


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
def serve_command(
    target: str, host: str, port: int, store_url: str | None, token: str | None, control: bool
) -> None:
    """Run the flow MODULE:ATTR (a flow or a zero-argument factory) and serve its live page."""
    from ..web import TOKEN_ENV
    from ..web._security import is_loopback

    if not token and not is_loopback(host):
        raise click.UsageError(
            f"--host {host} is not a loopback address: give --token or set {TOKEN_ENV}"
        )
    try:
        flow, registry, _types = load_target(target)
    except (ValueError, ImportError, AttributeError) as error:
        raise click.BadParameter(str(error), param_hint="MODULE:ATTR") from error
    try:
        store = open_store(store_url) if store_url else None
    except (ValueError, RuntimeError) as error:
        raise click.BadParameter(str(error), param_hint="--store") from error
    try:
        asyncio.run(_serve(flow, registry, store, host, port, token or None, control))
    except (OSError, RuntimeError, TimeoutError, StoreError) as error:
        raise click.ClickException(str(error)) from error


async def _serve(
    flow: PenguiFlow,
    registry: ModelRegistry | None,
    store: StoreBase | None,
    host: str,
    port: int,
    token: str | None,
    control: bool,
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
            flow, host=host, port=port, store=store, token=token, control=control
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
