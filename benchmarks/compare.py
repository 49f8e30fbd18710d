"""Two revisions of the runtime on the pipelined chain, in one process, paired round by round.

On a noisy host, figures from two separate runs cannot be compared: the machine's speed
moves more between runs than a change moves the runtime. Here both revisions are imported
side by side (each exported under a private package name) and their rounds alternate with
the floor's, so each round compares them under the same conditions. It prints each side's
median, its ratio to the floor, and the median over rounds of the speedup of the second
revision over the first.

Run: ``python benchmarks/compare.py BASE [OTHER] [--rounds 60] [--messages 5000]
[--middleware] [--loop asyncio|uvloop]``. BASE and OTHER are git revisions; OTHER defaults
to the working tree. Numbers, not assertions.
"""

from __future__ import annotations

import functools
import importlib
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _common as common
from _common import BareChain, FlowPipe, pipelined

if TYPE_CHECKING:
    from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
WORKTREE = "working tree"


def export(revision: str, into: Path, name: str) -> ModuleType:
    """Import ``penguiflow`` as it is at ``revision`` under the package name ``name``.

    The package imports itself only relatively, so a copy under another name is a separate,
    complete runtime.
    """
    target = into / name
    if revision == WORKTREE:
        shutil.copytree(REPO / "penguiflow", target)
    else:
        archive = subprocess.run(
            ["git", "archive", revision, "penguiflow"], cwd=REPO, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        (into / "penguiflow").rename(target)
    return importlib.import_module(name)


async def identity(message: Any, ctx: Any) -> Any:
    return message


async def noop(event: Any) -> None:
    return None


def chain_of(runtime: ModuleType, middleware: bool) -> FlowPipe:
    """The chain of ``chain.py``, built from the given revision's classes."""
    policy = runtime.NodePolicy(validate="none")
    nodes = [runtime.Node(identity, name=f"n{i}", policy=policy) for i in range(common.HOPS)]
    adjacencies = [nodes[i].to(nodes[i + 1]) for i in range(common.HOPS - 1)]
    middlewares = [noop] if middleware else []
    flow = runtime.create(*adjacencies, queue_maxsize=common.MAXSIZE, middlewares=middlewares)
    return FlowPipe(flow)


def messages_of(runtime: ModuleType, count: int) -> list[Any]:
    headers = runtime.Headers(tenant="bench")
    return [runtime.Message(payload=i, headers=headers) for i in range(count)]


async def main(
    runtimes: dict[str, ModuleType], *, messages: int, rounds: int, middleware: bool
) -> common.Rounds:
    batches = {label: messages_of(runtime, messages) for label, runtime in runtimes.items()}
    first = next(iter(batches.values()))
    sides: dict[str, Any] = {"floor": lambda: pipelined(BareChain(), first)}
    for label, runtime in runtimes.items():
        build = functools.partial(chain_of, runtime, middleware)
        batch = batches[label]
        await pipelined(build(), batch[:500])  # warm-up
        sides[label] = functools.partial(lambda b, m: pipelined(b(), m), build, batch)
    await pipelined(BareChain(), first[:500])
    return await common.interleave(rounds, sides)


def cli() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("base", help="git revision measured first")
    parser.add_argument("other", nargs="?", default=WORKTREE, help="default: the working tree")
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--middleware", action="store_true", help="attach one no-op middleware")
    parser.set_defaults(rounds=60)
    args = parser.parse_args()
    labels = {"base": args.base, "other": args.other}
    with tempfile.TemporaryDirectory(prefix="penguiflow-compare-") as directory:
        sys.path.insert(0, directory)
        runtimes = {
            label: export(revision, Path(directory), f"_penguiflow_{label}")
            for label, revision in labels.items()
        }
        coroutine = functools.partial(
            main,
            runtimes,
            messages=args.messages,
            rounds=args.rounds,
            middleware=args.middleware,
        )
        measured = common.run(coroutine, args.loop)
    shape = "chain + one no-op middleware" if args.middleware else "chain"
    print(f"{shape}, pipelined {args.messages:,} msgs, {args.rounds} rounds, {args.loop}")
    for label, revision in labels.items():
        rate = common.rate(measured[label])
        print(f"  {label} ({revision}): {measured.ratio(label, 'floor'):.3f}x floor ({rate})")
    speedups = sorted(
        other / base
        for base, other in zip(measured.samples["base"], measured.samples["other"], strict=True)
    )
    quarter = len(speedups) // 4
    print(
        f"  other over base: {statistics.median(speedups):.3f}x faster "
        f"(middle half of rounds {speedups[quarter]:.3f}x to {speedups[-quarter - 1]:.3f}x)"
    )


if __name__ == "__main__":
    cli()
