"""The worker's cancel book: a cancel leaves a mark only for a trace held in this process
(every cancel of the flow reaches every worker; a mark per cancel would outlive its trace)."""

from __future__ import annotations

from types import SimpleNamespace

from penguiflow._runtime.traces import TraceRegistry
from penguiflow.distributed._cancels import CancelBook


class Holder:
    """A consumer holding entries of some traces; records the traces it was told to cancel."""

    def __init__(self, *traces: str) -> None:
        self.held: dict[tuple[str, str], str | None] = {
            ("in", f"{i}-0"): trace for i, trace in enumerate(traces)
        }
        self.cancelled: list[str] = []

    def cancel_trace(self, trace_id: str) -> None:
        self.cancelled.append(trace_id)

    def holds_trace(self, trace_id: str) -> bool:
        return trace_id in self.held.values()


async def test_a_cancel_marks_only_traces_held_here_and_forget_drops_the_mark() -> None:
    traces = TraceRegistry(maxsize=0)
    book: CancelBook[Holder] = CancelBook(SimpleNamespace(traces=traces))  # type: ignore[arg-type]
    first, second = Holder("t-held"), Holder()
    book.consumers.extend([first, second])

    for n in range(1000):
        book.cancel(f"elsewhere-{n}")
    book.cancel("t-held")

    assert set(traces.flags) == {"t-held"}
    assert traces.flags["t-held"].is_set()
    assert first.cancelled == second.cancelled == ["t-held"]
    assert book.held_traces() == {"t-held"}

    first.held.clear()
    book.forget("t-held")
    assert traces.flags == {}
