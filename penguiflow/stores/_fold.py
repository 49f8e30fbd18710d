"""Folding a batch of writes into a few set-wise statements with the same outcome.

Design note: a flow with a durable store writes, per message, several events plus a trace
start and a trace end, so a batch interleaves three kinds of write. Committing them in call
order would take one statement per run of one kind (hundreds per batch), and every statement
is a round trip: to PostgreSQL, or to SQLite's thread, which must win the GIL back from a busy
event loop each time. Instead each batch is folded into at most six statements, applied in
one transaction:

- events: appended in call order (they only ever append to their own table);
- trace upserts: for each trace started in the batch, its state after the batch's last start
  and any later end (``created_at`` of an existing row is kept by the upsert);
- trace ends: for each trace ended but not started in the batch, its last end;
- binding terminals: for bindings marked terminal but not saved in the batch;
- binding saves: for each binding saved in the batch, its last save with any later terminal
  mark folded in, ordered by that last save (which orders their ``seq``);
- lease renewals: the last renewal of each lease.

Writes to different keys commute, and per key the fold keeps exactly the final effect, so
the database ends as if each write had been applied in turn. ``MemoryStore`` applies writes
one by one, and the conformance tests check the two agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..state import StoredEvent
from ._types import BindingSave, BindingTerminal, LeaseRenew, TraceEnd, TraceStart

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._types import TraceStatus, WriteOp

__all__ = ["FoldedBatch", "TraceUpsert", "fold"]


@dataclass(slots=True)
class TraceUpsert:
    """A trace's row after the batch, for a trace the batch started."""

    trace_id: str
    status: TraceStatus
    input_json: str
    flow_key: str
    created_at: float
    updated_at: float
    lease_id: str | None
    targets: str | None


@dataclass(slots=True)
class FoldedBatch:
    """A batch reduced to its final effect per key (see the module docstring)."""

    events: list[StoredEvent] = field(default_factory=list)
    trace_upserts: list[TraceUpsert] = field(default_factory=list)
    trace_ends: list[TraceEnd] = field(default_factory=list)
    binding_terminals: list[BindingTerminal] = field(default_factory=list)
    binding_saves: list[BindingSave] = field(default_factory=list)
    leases: list[LeaseRenew] = field(default_factory=list)

    @property
    def events_only(self) -> bool:
        """Whether the batch holds nothing but events (one statement, no transaction)."""
        return not (
            self.trace_upserts
            or self.trace_ends
            or self.binding_terminals
            or self.binding_saves
            or self.leases
        )


def fold(batch: Sequence[WriteOp]) -> FoldedBatch:
    """Fold ``batch`` (in call order) into its final effect per key."""
    folded = FoldedBatch()
    upserts: dict[str, TraceUpsert] = {}
    ends: dict[str, TraceEnd] = {}
    saves: dict[tuple[str, str | None, str], BindingSave] = {}
    terminals: dict[tuple[str, str | None, str], BindingTerminal] = {}
    leases: dict[str, LeaseRenew] = {}
    for op in batch:
        if isinstance(op, StoredEvent):
            folded.events.append(op)
        elif isinstance(op, TraceStart):
            ends.pop(op.trace_id, None)
            earlier = upserts.get(op.trace_id)  # a restart keeps the first creation time
            created_at = op.at if earlier is None else earlier.created_at
            upserts[op.trace_id] = TraceUpsert(
                op.trace_id,
                "running",
                op.input_json,
                op.flow_key,
                created_at,
                op.at,
                op.lease_id,
                op.targets,
            )
        elif isinstance(op, TraceEnd):
            started = upserts.get(op.trace_id)
            if started is None:
                ends[op.trace_id] = op
            else:
                started.status, started.updated_at = op.status, op.at
        elif isinstance(op, LeaseRenew):
            leases[op.lease_id] = op  # the last renewal holds
        elif isinstance(op, BindingSave):
            b = op.binding
            key = (b.trace_id, b.context_id, b.task_id)
            terminals.pop(key, None)
            saves.pop(key, None)  # re-inserted last: ordered by last save
            saves[key] = op
        else:
            key = (op.trace_id, op.context_id, op.task_id)
            saved = saves.get(key)
            if saved is None:
                terminals[key] = op
            else:
                marked = dataclasses.replace(saved.binding, is_terminal=True)
                saves[key] = BindingSave(marked, op.at)
    folded.trace_upserts = list(upserts.values())
    folded.trace_ends = list(ends.values())
    folded.binding_terminals = list(terminals.values())
    folded.binding_saves = list(saves.values())
    folded.leases = list(leases.values())
    return folded
