"""What the benchmark scripts share: messages, event loops, interleaved rounds, chains, printing.

Imported by bare name: Python puts a script's own directory first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any, TypeVar

from penguiflow import Headers, Message, Node, NodePolicy, PenguiFlow, create

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence

T = TypeVar("T")
LOOPS = ("asyncio", "uvloop")
UVLOOP_MISSING = (
    "uvloop is not installed, so it cannot be measured: pip install 'penguiflow-runtime[uvloop]'"
)
HOPS = 4
MAXSIZE = 64
Row = tuple[str, str, str]  # (what is measured, target, measured figures)


def make_messages(count: int) -> list[Message]:
    """Build ``count`` messages with distinct trace ids (the ``Message`` default)."""
    headers = Headers(tenant="bench")
    return [Message(payload=i, headers=headers) for i in range(count)]


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def run(coroutine_function: Callable[[], Coroutine[Any, Any, T]], loop: str) -> T:
    """Run a fresh coroutine on a new loop of the given kind ("asyncio" or "uvloop")."""
    factory = None
    if loop == "uvloop":
        if not uvloop_available():
            raise SystemExit(UVLOOP_MISSING)
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coroutine_function())


def loop_label() -> str:
    """Name the running loop's implementation, to show which one was really measured."""
    loop = asyncio.get_running_loop()
    if type(loop).__module__.startswith("uvloop"):
        from importlib.metadata import version

        return f"uvloop {version('uvloop')}"
    return "asyncio"


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every script takes: ``--rounds`` and ``--loop``."""
    summary = (doc or "").strip().splitlines()[0]
    result = argparse.ArgumentParser(description=summary)
    result.add_argument("--rounds", type=int, default=5, help="rounds per side (medians)")
    result.add_argument("--loop", choices=LOOPS, default="asyncio", help="event loop to run on")
    return result


class Rounds(dict[str, float]):
    """Each side's median over the rounds, with every round's figures kept for ratios."""

    def __init__(self, samples: Mapping[str, list[float]]) -> None:
        super().__init__({name: statistics.median(values) for name, values in samples.items()})
        self.samples = samples

    def per_round(self, figure: Callable[[Mapping[str, float]], float]) -> float:
        """The median over rounds of ``figure``, computed from one round's figures at a time."""
        count = len(next(iter(self.samples.values())))
        rounds = [{name: values[i] for name, values in self.samples.items()} for i in range(count)]
        return statistics.median(figure(each) for each in rounds)

    def ratio(self, numerator: str, denominator: str) -> float:
        """The median over rounds of ``numerator / denominator``, both from the same round.

        Sides of a round run within seconds of each other, so noise that lasts longer than
        that (a busy neighbour on the host, a slow phase of the machine) hits both and cancels
        out, where a ratio of two medians taken over the whole run would keep it.
        """
        return self.per_round(lambda figures: figures[numerator] / figures[denominator])


async def interleave(rounds: int, sides: Mapping[str, Callable[[], Awaitable[float]]]) -> Rounds:
    """Measure every side once per round; return each side's median and the rounds.

    Sides take turns, in an order that rotates each round, so that machine noise and position
    effects (garbage left by the previous side) hit all sides alike.
    """
    samples: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(await sides[name]())
    return Rounds(samples)


async def pipelined(
    pipe: QueuePipe | FlowPipe,
    messages: Sequence[Any],
    probe: Callable[[], None] | None = None,
    every: int = 1000,
) -> float:
    """Return messages per second with a producer and a consumer running at once.

    ``probe``, if given, runs after every ``every`` fetched messages, inside the timing.
    """

    async def produce() -> None:
        for message in messages:
            await pipe.emit(message)

    async def consume() -> None:
        for count in range(1, len(messages) + 1):
            await pipe.fetch()
            if probe is not None and count % every == 0:
                probe()

    pipe.start()
    started = time.perf_counter()
    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - started
    await pipe.stop()
    return len(messages) / elapsed


class QueuePipe:
    """A floor: tasks that move items from ``inbox`` to ``out`` over plain asyncio queues."""

    def __init__(self, maxsize: int = MAXSIZE) -> None:
        self.inbox = asyncio.Queue[Any](maxsize)
        self.out = asyncio.Queue[Any](maxsize)
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Spawn the tasks that move items; each floor defines its own."""

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.create_task(coroutine))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def emit(self, item: Any) -> None:
        await self.inbox.put(item)

    async def fetch(self) -> Any:
        return await self.out.get()


async def forward(inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any]) -> None:
    while True:
        await outbox.put(await inbox.get())


class BareChain(QueuePipe):
    """The chain's floor: one task per hop forwarding items between queues of floe size."""

    def start(self) -> None:
        middle = [asyncio.Queue[Any](MAXSIZE) for _ in range(HOPS - 1)]
        queues = [self.inbox, *middle, self.out]
        for inbox, outbox in itertools.pairwise(queues):
            self.spawn(forward(inbox, outbox))


class FlowPipe:
    """The runtime side: a flow driven through its public ``emit``/``fetch``."""

    def __init__(self, flow: PenguiFlow) -> None:
        self.flow = flow

    def start(self) -> None:
        self.flow.run()

    async def stop(self) -> None:
        await self.flow.stop()

    async def emit(self, item: Any) -> None:
        await self.flow.emit(item)

    async def fetch(self) -> Any:
        return await self.flow.fetch()


async def identity(message: Any, ctx: Any) -> Any:
    return message


def flow_chain(middlewares: Sequence[Callable[[Any], Awaitable[None]]] = ()) -> FlowPipe:
    """The chain's runtime: four identity nodes, validation off, floes of the floor's size."""
    policy = NodePolicy(validate="none")
    nodes = [Node(identity, name=f"n{i}", policy=policy) for i in range(HOPS)]
    adjacencies = [nodes[i].to(nodes[i + 1]) for i in range(HOPS - 1)]
    return FlowPipe(create(*adjacencies, queue_maxsize=MAXSIZE, middlewares=list(middlewares)))


def rate(value: float) -> str:
    return f"{value:,.0f} msg/s"


def report(title: str, rounds: int, loop: str, rows: Sequence[Row]) -> None:
    print(f"{title} -- python {sys.version.split()[0]}, {loop}, median of {rounds} rounds")
    for line, target, figures in rows:
        print(f"  {line}: {figures}  [target {target}]")
