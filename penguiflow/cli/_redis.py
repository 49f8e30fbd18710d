"""``penguiflow worker`` and ``penguiflow dlq``: serve a flow from Redis, handle dead letters.

The Redis URL comes from ``--redis`` or the ``PENGUIFLOW_REDIS_URL`` environment variable
(which keeps a password off the command line); it is printed with its password hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from ._errors import CommandError
from ._target import load_target

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import BaseModel

    from .._runtime.flow import PenguiFlow
    from ..distributed import RedisBackend
    from ..registry import ModelRegistry

__all__ = ["dlq", "worker"]


def _backend_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every Redis command shares (outermost first)."""
    options = [
        click.option(
            "--redis",
            envvar="PENGUIFLOW_REDIS_URL",
            show_envvar=True,
            help="The Redis URL (redis://HOST:PORT/DB).",
        ),
        click.option("--flow-id", default="default", show_default=True),
        click.option(
            "--min-idle",
            type=float,
            default=10.0,
            show_default=True,
            help="Seconds before a crashed worker's entries are taken over.",
        ),
        click.option("--max-deliveries", type=int, default=3, show_default=True),
        click.option("--max-envelope-bytes", type=int, default=1 << 20, show_default=True),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _backend(options: dict[str, Any], types: list[type[BaseModel]]) -> RedisBackend:
    from ..distributed import RedisBackend

    if not options["redis"]:
        raise CommandError("give --redis URL or set PENGUIFLOW_REDIS_URL")
    try:
        return RedisBackend(
            options["redis"],
            flow_id=options["flow_id"],
            types=types,
            min_idle_s=options["min_idle"],
            max_deliveries=options["max_deliveries"],
            max_envelope_bytes=options["max_envelope_bytes"],
        )
    except ValueError as exc:  # the message hides the URL's password
        raise CommandError(str(exc)) from None


@click.command()
@click.argument("target", metavar="MODULE:ATTR")
@_backend_options
@click.option("--nodes", help="Comma-separated node names (default: all).")
@click.option("--concurrency", type=int, help="Entries per node at once.")
@click.option(
    "--grace", type=float, default=30.0, show_default=True, help="Seconds to finish on stop."
)
@click.option("--consumer", help="Consumer name (default: host:pid:random).")
@click.option(
    "--log-level", default="warning", show_default=True, help="Logged to stderr from this level."
)
@click.option(
    "--metrics-port", type=int, help="Serve /metrics and /healthz here (prometheus extra)."
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Where --metrics-port listens."
)
def worker(target: str, **options: Any) -> int:
    """Serve a flow's nodes from Redis until SIGTERM or SIGINT."""
    # A worker's warnings (Redis away, dead letters) must be seen: log them to stderr.
    logging.basicConfig(
        level=options["log_level"].upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    flow, registry, types = load_target(target)
    backend = _backend(options, types)
    nodes = options["nodes"].split(",") if options["nodes"] else None
    return asyncio.run(_serve(flow, registry, backend, nodes, options))


async def _serve(
    flow: PenguiFlow,
    registry: ModelRegistry | None,
    backend: RedisBackend,
    nodes: list[str] | None,
    options: dict[str, Any],
) -> int:
    from ..distributed import BackendUnavailable, Worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    worker = Worker(
        flow,
        backend,
        nodes=nodes,
        concurrency=options["concurrency"],
        registry=registry,
        consumer=options["consumer"],
    )
    async with contextlib.AsyncExitStack() as stack:
        metrics = ""
        if options["metrics_port"] is not None:
            from ..observe import serve_worker_metrics

            server = await serve_worker_metrics(
                worker, host=options["metrics_host"], port=options["metrics_port"]
            )
            stack.push_async_callback(server.close)
            metrics = f" metrics=http://{server.host}:{server.port}"

        def ready() -> None:
            served = ",".join(nodes) if nodes else "all"
            print(
                f"penguiflow worker ready: flow={backend.flow_id} nodes={served} "
                f"redis={backend.url} pid={os.getpid()} consumer={worker.name}{metrics}",
                flush=True,
            )

        try:
            await worker.run(stop=stop, grace_s=options["grace"], ready=ready)
        except (BackendUnavailable, ValueError) as exc:  # unreachable, or a URL option refused
            print(f"penguiflow worker: {exc}", file=sys.stderr, flush=True)
            return 2
    print("penguiflow worker stopped", flush=True)
    return 0


@click.command()
@click.argument("action", type=click.Choice(["list", "show", "redrive"]))
@click.argument("target", metavar="MODULE:ATTR")
@click.argument("node")
@click.argument("ids", nargs=-1)
@_backend_options
def dlq(action: str, target: str, node: str, ids: tuple[str, ...], **options: Any) -> int:
    """List, show or re-drive a node's dead letters.

    IDS are dead-letter ids: show takes one; redrive takes any (none: all of them).
    """
    if action == "show" and len(ids) != 1:
        raise CommandError(f"dlq show takes one dead-letter id, got {len(ids)}")
    _flow, _registry, types = load_target(target)
    backend = _backend(options, types)
    return asyncio.run(_dlq(backend, action, node, list(ids)))


async def _dlq(backend: RedisBackend, action: str, node: str, ids: list[str]) -> int:
    try:
        if action == "redrive":
            count = await backend.redrive(node, ids or None)
            print(f"re-drove {count} dead letters of {node}")
            return 0
        letters = (
            await backend.dead_letters(node)
            if action == "list"
            else [each for each in [await backend.dead_letter(node, ids[0])] if each is not None]
        )
        for letter in letters:
            line: dict[str, Any] = {
                "id": letter.id,
                "stream": letter.stream,
                "entry_id": letter.entry_id,
                "deliveries": letter.deliveries,
                "reason": letter.reason,
            }
            if action == "show":
                line["envelope"] = letter.envelope
            print(json.dumps(line))
        return 0 if letters or action == "list" else 1
    finally:
        await backend.close()
