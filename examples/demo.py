"""PenguiFlow demo: three concurrent questions through one flow, journaled to SQLite.

                          +--> web ------+
    flow.emit(q, T) ------+--> docs -----+--> merge --> write --> sse --> flow.fetch(T)
                          +--> memory ---+   (join_k)

What to look for in the output:

- **Fan-out.** A question is emitted once. OpenSea has one floe per searcher, so ``web``,
  ``docs`` and ``memory`` all receive the same message.
- **Retry.** ``docs`` fails on its very first call (its index is "warming up"). Its
  ``NodePolicy(max_retries=2, backoff_base=0.05)`` retries it 50 ms later and it succeeds.
- **Join.** ``join_k("merge", 3)`` holds each trace's search hits until all three are in,
  then passes them on as one message.
- **Streaming.** ``write`` streams the answer one sentence at a time with
  ``ctx.emit_chunk``; ``sse`` renders each chunk as a Server-Sent Events frame (standing in
  for an HTTP response) and passes the finished answer on to the Rookery. (A trace-scoped
  ``fetch`` returns one item per roundtrip, so the chunks are consumed inside the flow.)
- **Cancellation.** The (fake) model stops responding to ``req-3`` after its first sentence.
  The caller gives up and runs ``flow.cancel("req-3")``: ``write`` sees ``CancelledError``,
  the trace's pending fetch raises ``TraceCancelled`` and the other requests are untouched.
- **Roundtrips.** Each question is its own task doing ``await flow.emit(msg, trace_id=T)``
  then ``await flow.fetch(trace_id=T)``, so each caller gets only its own answer.
- **Journal.** The flow's state store is a ``SQLiteStore``: an embedded database in one file,
  no server. ``emit`` returns once the trace's start is committed; every event is saved, and
  how each trace ended (``finished`` or ``cancelled``). At the end the demo reads its traces
  back from the file and prints where the file is. Trace ids end in this run's id
  (``req-1.3fa9c2``), so running the demo again adds to the history instead of mixing runs.

A middleware prints the runtime's events as they happen: ``node_start`` and the matching
``node_success`` share a line when nothing happens in between; retries, errors and the
``trace_cancel_start``/``trace_cancel_finish`` pair get their own lines. Times are real,
measured from the start of the demo. The ``sse`` node prints its frames instead of its own
start/success lines.

Run it with ``python examples/demo.py`` (needs the ``sqlite`` extra: ``pip install -e
'.[sqlite]'``). The file is ``penguiflow-demo.db`` in the current directory, or the path in
``PENGUIFLOW_DEMO_DB``, or the one given with ``--db PATH`` (which wins).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import BaseModel

from penguiflow import (
    Context,
    FlowEvent,
    Headers,
    Message,
    Node,
    NodePolicy,
    PenguiFlow,
    StreamChunk,
    create,
    format_sse_event,
    join_k,
)
from penguiflow.errors import TraceCancelled
from penguiflow.stores import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

DB_ENV = "PENGUIFLOW_DEMO_DB"
DEFAULT_DB = "penguiflow-demo.db"

QUESTIONS = {
    "req-1": "How do penguins stay warm?",
    "req-2": "What do penguins eat?",
    "req-3": "Write a long essay on penguin evolution.",
}
STALLED = "req-3"
SOURCES = ("web", "docs", "memory")

# Three tiny in-memory "back ends", keyed by topic, so the demo needs no network.
KNOWLEDGE = {
    "web": {
        "warm": "Dense, overlapping feathers trap a layer of warm air.",
        "eat": "They eat mostly krill, squid and small fish.",
        "evolution": "The oldest penguin fossils are about 60 million years old.",
    },
    "docs": {
        "warm": "A thick layer of blubber insulates them from icy water.",
        "eat": "They catch prey underwater and swallow it whole.",
        "evolution": "Their wings evolved into stiff flippers for swimming.",
    },
    "memory": {
        "warm": "Emperor penguins huddle in large groups and take turns on the windy edge.",
        "eat": "Emperor penguins can dive deeper than 500 m to hunt.",
        "evolution": "Some extinct penguins were as tall as an adult human.",
    },
}


def db_path(argv: Sequence[str], environ: Mapping[str, str]) -> Path:
    """The journal file: ``--db PATH``, else ``$PENGUIFLOW_DEMO_DB``, else ./penguiflow-demo.db."""
    parser = argparse.ArgumentParser(description="PenguiFlow demo, journaled to SQLite.")
    parser.add_argument(
        "--db",
        default=environ.get(DB_ENV) or DEFAULT_DB,
        help=f"SQLite file to journal to (default: ${DB_ENV}, else ./{DEFAULT_DB})",
    )
    return Path(parser.parse_args(list(argv)).db)


def label_of(trace_id: str | None) -> str | None:
    """The question's label (``req-1``) of a trace id that ends in the run's id."""
    return None if trace_id is None else trace_id.partition(".")[0]


def topic_of(question: str) -> str:
    text = question.lower()
    for topic in ("warm", "eat", "evolution"):
        if topic in text:
            return topic
    raise LookupError(f"no knowledge about {question!r}: ask how they stay warm, eat or evolved")


class Hit(BaseModel):
    source: str
    text: str


class Answer(BaseModel):
    text: str
    sources: list[str]


class Console:
    """Prints timestamped lines; a line may stay open until its node finishes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._t0 = time.perf_counter()
        self._open: tuple[str | None, str | None, int] | None = None
        self._stream = stream

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1000

    def prefix(self, trace_id: str | None, who: str) -> str:
        return f"  {self.elapsed_ms():7.1f} ms  {label_of(trace_id) or '-':<6} {who:<8}"

    def say(self, text: str) -> None:
        self._close()
        print(text, file=self._stream)

    def begin(self, key: tuple[str | None, str | None, int], text: str) -> None:
        self._close()
        print(text, end="", flush=True, file=self._stream)
        self._open = key

    def finish(self, key: tuple[str | None, str | None, int], tail: str, full: str) -> None:
        if self._open == key:
            self._open = None
            print(tail, file=self._stream)
        else:
            self.say(full)

    def _close(self) -> None:
        if self._open is not None:
            self._open = None
            print(file=self._stream)


class LiveLog:
    """Middleware: a compact, live view of the runtime's events."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.counts: Counter[str] = Counter()
        self.retries: list[tuple[str | None, str | None, int]] = []
        self.cancel_finished = asyncio.Event()

    async def __call__(self, event: FlowEvent) -> None:
        kind = event.event_type
        self.counts[kind] += 1
        if event.node_name == "sse" and kind in ("node_start", "node_success"):
            return  # the sse node prints its frames instead
        con = self.console
        key = (event.trace_id, event.node_name, event.attempt)
        head = con.prefix(event.trace_id, event.node_name or "?")
        if kind == "node_start":
            again = f" (attempt {event.attempt})" if event.attempt else ""
            con.begin(key, f"{head} start{again}")
        elif kind == "node_success":
            took = f"ok {event.latency_ms:.1f} ms"
            con.finish(key, f" ... {took}", f"{head} {took}")
        elif kind == "node_error":
            error = event.extra.get("exception")
            con.finish(key, f" ... error {error}", f"{head} error {error}")
        elif kind == "node_retry":
            self.retries.append((label_of(event.trace_id), event.node_name, event.attempt))
            con.say(f"{head} retry (attempt {event.attempt}) in {event.extra['sleep_s']:.2f} s")
        elif kind == "node_trace_cancelled":
            con.say(f"{head} interrupted by the cancellation")
        elif kind in ("trace_cancel_start", "trace_cancel_finish"):
            con.say(f"{head} {kind} (pending={event.trace_pending})")
            if kind == "trace_cancel_finish":
                self.cancel_finished.set()


class FlakyIndex:
    """The docs back end: its first lookup fails, as a cold service might."""

    def __init__(self) -> None:
        self.calls = 0

    async def lookup(self, topic: str) -> str:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("docs index is warming up")
        return KNOWLEDGE["docs"][topic]


class FakeModel:
    """Stands in for an LLM writing one sentence per hit; it stalls on one trace."""

    def __init__(self, stall_on: str) -> None:
        self.stall_on = stall_on
        self.stalled = asyncio.Event()  # set when the model stops responding
        self._reply = asyncio.Event()  # never set: the reply that does not come

    async def sentence(self, trace_id: str, index: int, hit: Hit) -> str:
        if label_of(trace_id) == self.stall_on and index == 1:
            self.stalled.set()
            await self._reply.wait()
        return hit.text


@dataclass
class Record:
    """What the nodes saw, for the summary (keyed by the questions' labels)."""

    merged: dict[str, int] = field(default_factory=dict)
    chunks: dict[str, list[int]] = field(default_factory=dict)


def build(
    console: Console,
    log: LiveLog | None,
    model: FakeModel,
    record: Record,
    store: SQLiteStore | None,
) -> PenguiFlow:
    index = FlakyIndex()

    def searcher(source: str) -> Node:
        async def search(msg: Message, ctx: Context) -> Message:
            topic = topic_of(msg.payload)
            if source == "docs":
                text = await index.lookup(topic)
            else:
                text = KNOWLEDGE[source][topic]
            return msg.model_copy(update={"payload": Hit(source=source, text=text)})

        policy = NodePolicy(validate="none")
        if source == "docs":
            policy = NodePolicy(validate="none", max_retries=2, backoff_base=0.05)
        return Node(search, name=source, policy=policy)

    async def write(msg: Message, ctx: Context) -> Message:
        hits = sorted(msg.payload, key=lambda hit: SOURCES.index(hit.source))
        record.merged[label_of(msg.trace_id) or "-"] = len(hits)
        sentences = []
        for position, hit in enumerate(hits):
            sentence = await model.sentence(msg.trace_id, position, hit)
            sentences.append(sentence)
            await ctx.emit_chunk(parent=msg, text=sentence, done=position == len(hits) - 1)
        answer = Answer(text=" ".join(sentences), sources=[hit.source for hit in hits])
        return msg.model_copy(update={"payload": answer})

    async def sse(msg: Message, ctx: Context) -> Message | None:
        if isinstance(msg.payload, StreamChunk):
            chunk = msg.payload
            record.chunks.setdefault(label_of(msg.trace_id) or "-", []).append(chunk.seq)
            frame = format_sse_event(chunk).strip().replace("\n", " | ")
            console.say(f"{console.prefix(msg.trace_id, 'sse')} {frame}")
            return None
        return msg  # the finished answer goes on to the Rookery

    searchers = [searcher(source) for source in SOURCES]
    merge = join_k("merge", len(searchers))
    write_node = Node(write, name="write", policy=NodePolicy(validate="none"))
    sse_node = Node(sse, name="sse", policy=NodePolicy(validate="none"))
    return create(
        *(node.to(merge) for node in searchers),
        merge.to(write_node),
        write_node.to(sse_node),
        sse_node.to(),
        middlewares=[log] if log is not None else [],
        state_store=store,
    )


def flow() -> PenguiFlow:
    """The demo's graph for the ``penguiflow`` command, e.g.
    ``penguiflow run examples/demo.py:flow --store sqlite:///penguiflow-demo.db``.

    Each input line is a question (a JSON string); the ``sse`` frames go to stderr, so that
    stdout holds only the command's JSON lines. No store of its own: ``--store`` names one.
    """
    return build(Console(sys.stderr), None, FakeModel(stall_on=STALLED), Record(), None)


async def ask(flow: PenguiFlow, trace_id: str, question: str) -> Answer | None:
    """One caller's roundtrip; None if its trace was cancelled."""
    await flow.emit(Message(payload=question, headers=Headers(tenant="demo")), trace_id=trace_id)
    try:
        out = await flow.fetch(trace_id=trace_id)
    except TraceCancelled:
        return None
    answer: Answer = out.payload
    return answer


async def converse(
    flow: PenguiFlow, console: Console, log: LiveLog, model: FakeModel, trace_ids: dict[str, str]
) -> dict[str, Answer | None]:
    """Ask every question at once and give up on the one the model stalls on."""
    # A safety net only: the demo finishes in well under a second.
    async with asyncio.timeout(10), asyncio.TaskGroup() as group:
        tasks = {
            label: group.create_task(ask(flow, trace_ids[label], question))
            for label, question in QUESTIONS.items()
        }
        await model.stalled.wait()
        stalled = trace_ids[STALLED]
        giving_up = f"model stalled; giving up: flow.cancel({stalled!r})"
        console.say(f"{console.prefix(stalled, 'caller')} {giving_up}")
        await flow.cancel(stalled)
    await log.cancel_finished.wait()
    return {label: task.result() for label, task in tasks.items()}


async def read_journal(
    store: SQLiteStore, trace_ids: dict[str, str], since: float
) -> dict[str, dict[str, Any]]:
    """Read this run's traces back from the file: how each ended, and its saved events."""
    stored = {trace.trace_id: trace for trace in await store.list_traces(since=since)}
    journal = {}
    for label, trace_id in trace_ids.items():
        trace = stored.get(trace_id)
        history = await store.load_history(trace_id)
        journal[label] = {
            "trace_id": trace_id,
            "status": trace.status if trace is not None else "not journaled",
            "events": len(history),
            "kinds": Counter(event.kind for event in history),
        }
    return journal


def report(
    answers: dict[str, Answer | None],
    record: Record,
    log: LiveLog,
    journal: dict[str, dict[str, Any]],
    elapsed_ms: float,
) -> None:
    print("\nResults")
    for label, question in QUESTIONS.items():
        answer = answers[label]
        print(f"  {label}  {question}")
        if answer is None:
            streamed = len(record.chunks.get(label, []))
            print(f"         cancelled after {streamed} streamed chunk(s); no answer delivered")
        else:
            print(f"         {answer.text}")
            print(f"         (sources: {', '.join(answer.sources)})")
    shown = (
        "node_start",
        "node_success",
        "node_error",
        "node_retry",
        "trace_cancel_start",
        "trace_cancel_finish",
    )
    counts = ", ".join(f"{kind} x{log.counts[kind]}" for kind in shown)
    print(f"\nEvents (all nodes): {counts}")
    print(f"Finished in {elapsed_ms:.0f} ms.")
    print("\nJournal, read back from the file")
    for entry in journal.values():
        print(f"  {entry['trace_id']:<14} {entry['status']:<10} {entry['events']:>3} events saved")


async def main(db: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Run the demo, journaling to ``db`` (default: ``db_path`` of no arguments)."""
    path = Path(db) if db is not None else db_path([], os.environ)
    run_id = secrets.token_hex(3)
    trace_ids = {label: f"{label}.{run_id}" for label in QUESTIONS}
    console = Console()
    log = LiveLog(console)
    model = FakeModel(stall_on=STALLED)
    record = Record()
    started = time.time()
    print(f"PenguiFlow demo: {len(QUESTIONS)} concurrent questions (run {run_id})\n")
    print("  time        trace  node     event")
    async with SQLiteStore(path) as store:
        flow = build(console, log, model, record, store)
        flow.run()
        try:
            answers = await converse(flow, console, log, model, trace_ids)
        finally:
            await flow.stop()
        elapsed_ms = console.elapsed_ms()
        journal = await read_journal(store, trace_ids, since=started)
    report(answers, record, log, journal, elapsed_ms)
    print(f"Trace history saved to {path.resolve()}")
    return {
        "answers": {key: value.text for key, value in answers.items() if value is not None},
        "cancelled": [key for key, value in answers.items() if value is None],
        "merged": dict(record.merged),
        "chunks": {key: list(value) for key, value in record.chunks.items()},
        "retries": list(log.retries),
        "events": dict(log.counts),
        "elapsed_ms": elapsed_ms,
        "db": path,
        "trace_ids": trace_ids,
        "journal": journal,
    }


if __name__ == "__main__":
    asyncio.run(main(db_path(sys.argv[1:], os.environ)))
