"""``penguiflow worker`` and ``penguiflow dlq``: serve a flow from Redis, handle dead letters.

The Redis URL comes from ``--redis`` or the ``PENGUIFLOW_REDIS_URL`` environment variable
(which keeps a password off the command line); it is printed with its password hidden.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..registry import ModelRegistry

if TYPE_CHECKING:
    import argparse
    from types import ModuleType

    from pydantic import BaseModel

    from .._runtime.flow import PenguiFlow
    from ..distributed import RedisBackend

__all__ = ["add_commands", "load_target"]


def add_commands(commands: Any) -> None:
    """Add ``worker`` and ``dlq`` to the ``penguiflow`` parser's subcommands."""
    worker = commands.add_parser("worker", help="serve a flow's nodes from Redis")
    worker.add_argument("target", help="MODULE:ATTR, a flow or a zero-argument factory")
    _backend_options(worker)
    worker.add_argument("--nodes", help="comma-separated node names (default: all)")
    worker.add_argument("--concurrency", type=int, help="entries per node at once")
    worker.add_argument("--grace", type=float, default=30.0, help="seconds to finish on stop")
    worker.add_argument("--consumer", help="consumer name (default: host:pid:random)")
    worker.add_argument("--log-level", default="warning", help="logged to stderr from this level")
    worker.set_defaults(run=_run_worker)

    dlq = commands.add_parser("dlq", help="list, show or re-drive a node's dead letters")
    dlq.add_argument("action", choices=["list", "show", "redrive"])
    dlq.add_argument("target", help="MODULE:ATTR of the flow")
    dlq.add_argument("node", help="the node's name")
    dlq.add_argument("ids", nargs="*", help="dead-letter ids (show: one; redrive: none = all)")
    _backend_options(dlq)
    dlq.set_defaults(run=_run_dlq)


def _backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", default=os.environ.get("PENGUIFLOW_REDIS_URL"))
    parser.add_argument("--flow-id", default="default")
    parser.add_argument("--min-idle", type=float, default=10.0, help="seconds before take-over")
    parser.add_argument("--max-deliveries", type=int, default=3)
    parser.add_argument("--max-envelope-bytes", type=int, default=1 << 20)


def load_target(target: str) -> tuple[PenguiFlow, ModelRegistry | None, list[type[BaseModel]]]:
    """Import ``MODULE:ATTR`` (or ``PATH.py:ATTR``): a flow, or a zero-argument factory.

    The factory returns a flow, or ``(flow, registry)``, or ``(flow, registry, types)`` with
    ``types`` the payload models to accept besides the registry's (``RedisBackend(types=)``).

    Raises:
        ValueError: ``target`` is not ``MODULE:ATTR`` or does not give a flow.
    """
    from .._runtime.flow import PenguiFlow

    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise ValueError(f"expected MODULE:ATTR or PATH.py:ATTR, got {target!r}")
    found: Any = getattr(_import(module_name), attr)
    if callable(found) and not isinstance(found, PenguiFlow):
        found = found()
    flow, registry, types = (*found, [], [])[:3] if isinstance(found, tuple) else (found, None, [])
    if not isinstance(flow, PenguiFlow) or not (
        registry is None or isinstance(registry, ModelRegistry)
    ):
        raise ValueError(
            f"{target} gives {type(found).__name__}, not a flow, (flow, registry) or "
            "(flow, registry, types)"
        )
    return flow, registry, list(types)


def _import(name: str) -> ModuleType:
    """Import a module by name, or a ``.py`` file by path (under a private module name)."""
    if not name.endswith(".py"):
        return importlib.import_module(name)
    path = Path(name).resolve()
    module_name = f"_penguiflow_target_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # pydantic resolves the module's annotations by name
    spec.loader.exec_module(module)
    return module


def _backend(args: argparse.Namespace, types: list[type[BaseModel]]) -> RedisBackend:
    from ..distributed import RedisBackend

    if not args.redis:
        raise SystemExit("penguiflow: give --redis URL or set PENGUIFLOW_REDIS_URL")
    try:
        return RedisBackend(
            args.redis,
            flow_id=args.flow_id,
            types=types,
            min_idle_s=args.min_idle,
            max_deliveries=args.max_deliveries,
            max_envelope_bytes=args.max_envelope_bytes,
        )
    except ValueError as exc:  # the message hides the URL's password
        raise SystemExit(f"penguiflow: {exc}") from None


def _run_worker(args: argparse.Namespace) -> int:
    # A worker's warnings (Redis away, dead letters) must be seen: log them to stderr.
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    flow, registry, types = load_target(args.target)
    backend = _backend(args, types)
    nodes = args.nodes.split(",") if args.nodes else None
    return asyncio.run(_serve(flow, registry, backend, nodes, args))


async def _serve(
    flow: PenguiFlow,
    registry: ModelRegistry | None,
    backend: RedisBackend,
    nodes: list[str] | None,
    args: argparse.Namespace,
) -> int:
    from ..distributed import BackendUnavailable, serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def ready() -> None:
        served = ",".join(nodes) if nodes else "all"
        print(
            f"penguiflow worker ready: flow={backend.flow_id} nodes={served} "
            f"redis={backend.url} pid={os.getpid()}",
            flush=True,
        )

    try:
        await serve(
            flow,
            backend,
            nodes=nodes,
            concurrency=args.concurrency,
            registry=registry,
            stop=stop,
            grace_s=args.grace,
            consumer=args.consumer,
            ready=ready,
        )
    except (BackendUnavailable, ValueError) as exc:  # unreachable, or a URL option refused
        print(f"penguiflow worker: {exc}", file=sys.stderr, flush=True)
        return 2
    print("penguiflow worker stopped", flush=True)
    return 0


def _run_dlq(args: argparse.Namespace) -> int:
    _flow, _registry, types = load_target(args.target)
    backend = _backend(args, types)
    return asyncio.run(_dlq(backend, args.action, args.node, list(args.ids)))


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
