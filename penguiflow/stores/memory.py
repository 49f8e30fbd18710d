"""``MemoryStore``: the state store that keeps everything in the process, for tests and demos.

It goes through the same writer as the durable stores and keeps payloads and metadata as the
same JSON text, so code that works against it sees what it would see with SQLite or
PostgreSQL: the same ordering, backpressure and flushing, and the same decoded values.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import TYPE_CHECKING

from ..state import RemoteBinding, StoredEvent
from ._base import (
    DEFAULT_FAILING_AFTER_S,
    DEFAULT_LEASE_TTL_S,
    Durability,
    Lease,
    StoreBase,
    binding_key,
)
from ._codec import decode_object, encode_json
from ._types import (
    BindingSave,
    BindingTerminal,
    LeaseRenew,
    StoredTrace,
    TraceEnd,
    TraceStart,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from ._types import BindingQuery, TraceQuery, WriteOp

__all__ = ["MemoryStore"]

# (id, trace_id, ts, kind, node_name, node_id, payload JSON): an ``events`` row.
_EventRow = tuple[int, str | None, float, str, str | None, str | None, str]


@dataclasses.dataclass(slots=True)
class _BindingRow:
    binding: RemoteBinding  # metadata emptied; kept as JSON in ``metadata_json``
    metadata_json: str


class MemoryStore(StoreBase):
    """Keeps events, traces and remote bindings in memory; nothing survives the process.

    Memory grows with every event saved; it is meant for tests, demos and short runs.
    See ``StoreBase`` for the behaviour shared by every store.

    Args:
        batch_size: The most writes applied at once.
        buffer_size: The most writes held before savers wait.
        retry_initial_s: The wait after a first failed commit (only a subclass can fail).
        retry_max_s: The cap on the wait between commit attempts.
        failing_after_s: Seconds of failing commits in a row before ``status`` is
            ``failing`` (30 s by default).
        clock: The wall clock that stamps traces and bindings.
        durability: ``"commit"`` (default) or ``"queued"``; see ``StoreBase``.
        events: Which flow events to keep: ``"all"``, ``"none"`` or a collection of kinds.
        owner_id: Names this process in the store's leases; see ``StoreBase``.
        lease_ttl_s: How long the lease lasts without a heartbeat (10 s by default).
    """

    def __init__(
        self,
        *,
        batch_size: int = 512,
        buffer_size: int = 8192,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 5.0,
        failing_after_s: float = DEFAULT_FAILING_AFTER_S,
        clock: Callable[[], float] = time.time,
        durability: Durability = "commit",
        events: str | Iterable[str] = "all",
        owner_id: str | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
    ) -> None:
        super().__init__(
            name=f"MemoryStore at {id(self):#x}",
            batch_size=batch_size,
            buffer_size=buffer_size,
            retry_initial_s=retry_initial_s,
            retry_max_s=retry_max_s,
            failing_after_s=failing_after_s,
            clock=clock,
            durability=durability,
            events=events,
            owner_id=owner_id,
            lease_ttl_s=lease_ttl_s,
        )
        self._event_ids = itertools.count(1)
        self._histories: dict[str | None, list[_EventRow]] = {}
        self._traces: dict[str, StoredTrace] = {}
        self._bindings: dict[str, _BindingRow] = {}
        # lease id -> (owner, expires_at)
        self._leases: dict[str, tuple[str, float]] = {}

    async def _open(self) -> None:
        return None

    async def _register_lease(self, lease: Lease, now: float, expires_at: float) -> None:
        if lease.exclusive:
            for lease_id, (owner, _) in list(self._leases.items()):
                if owner == lease.owner:
                    self._leases[lease_id] = (owner, 0.0)
        self._leases[lease.lease_id] = (lease.owner, expires_at)

    async def _end_lease(self, lease_id: str) -> None:
        held = self._leases.get(lease_id)
        if held is not None:
            self._leases[lease_id] = (held[0], 0.0)

    async def _claim(
        self, flow_key: str, lease_id: str, now: float, limit: int
    ) -> list[StoredTrace]:
        # No await: nothing interleaves, so the claim is one step, as a transaction.
        claimed: list[StoredTrace] = []
        running = sorted(
            (t for t in self._traces.values() if t.status == "running" and t.flow_key == flow_key),
            key=lambda trace: (trace.created_at, trace.trace_id),
        )
        for trace in running:
            if len(claimed) >= limit:
                break
            held = trace.lease_id
            if held not in (None, lease_id) and self._leases.get(held, ("", 0.0))[1] >= now:
                continue
            trace.lease_id, trace.updated_at = lease_id, now
            claimed.append(dataclasses.replace(trace))
        return claimed

    async def _release(self) -> None:
        return None

    async def _commit_batch(self, batch: Sequence[WriteOp]) -> None:
        # Applied one by one, in call order: the reference the SQL stores' folding must match
        # (see ``_fold``). Nothing here can fail half-way: encoding never raises.
        histories, ids = self._histories, self._event_ids
        for op in batch:
            if isinstance(op, StoredEvent):
                row = (
                    next(ids),
                    op.trace_id,
                    op.ts,
                    op.kind,
                    op.node_name,
                    op.node_id,
                    encode_json(op.payload),
                )
                histories.setdefault(op.trace_id, []).append(row)
            else:
                self._apply(op)

    def _apply(self, op: WriteOp) -> None:
        if isinstance(op, TraceStart):
            known = self._traces.get(op.trace_id)
            created_at = op.at if known is None else known.created_at
            self._traces[op.trace_id] = StoredTrace(
                op.trace_id,
                "running",
                op.input_json,
                created_at,
                op.at,
                op.flow_key,
                op.targets,
                op.lease_id,
            )
        elif isinstance(op, TraceEnd):
            trace = self._traces.get(op.trace_id)
            if trace is not None:
                trace.status, trace.updated_at = op.status, op.at
        elif isinstance(op, LeaseRenew):
            held = self._leases.get(op.lease_id)
            if held is not None and held[1] > 0:  # an ended lease is never renewed
                self._leases[op.lease_id] = (held[0], op.expires_at)
        elif isinstance(op, BindingSave):
            binding = op.binding
            key = binding_key(binding.trace_id, binding.context_id, binding.task_id)
            self._bindings.pop(key, None)  # re-inserted last: dicts keep save order
            self._bindings[key] = _BindingRow(
                dataclasses.replace(binding, metadata={}), encode_json(binding.metadata)
            )
        elif isinstance(op, BindingTerminal):
            row = self._bindings.get(binding_key(op.trace_id, op.context_id, op.task_id))
            if row is not None:
                row.binding.is_terminal = True

    async def _prune(self, cutoff: float) -> int:
        # No await: a commit cannot interleave, so the removal is one step, as a transaction.
        gone = {
            trace_id
            for trace_id, trace in self._traces.items()
            if trace.status != "running" and trace.updated_at < cutoff
        }
        if not gone:
            return 0
        for trace_id in gone:
            del self._traces[trace_id]
            self._histories.pop(trace_id, None)
        for key in [key for key, row in self._bindings.items() if row.binding.trace_id in gone]:
            del self._bindings[key]
        return len(gone)

    async def _read_history(self, trace_id: str) -> list[StoredEvent]:
        return [
            StoredEvent(
                trace, ts, kind, name, node_id, decode_object(text, table="events", row_id=row_id)
            )
            for row_id, trace, ts, kind, name, node_id, text in self._histories.get(trace_id, ())
        ]

    async def _read_traces(self, query: TraceQuery) -> list[StoredTrace]:
        selected = [
            trace
            for trace in self._traces.values()
            if (query.status is None or trace.status == query.status)
            and (query.flow_key is None or trace.flow_key == query.flow_key)
            and (query.since is None or trace.updated_at >= query.since)
            and (query.until is None or trace.updated_at < query.until)
        ]
        if query.oldest_first:
            selected.sort(key=lambda trace: (trace.created_at, trace.trace_id))
        else:
            selected.sort(key=lambda trace: trace.trace_id)
            selected.sort(key=lambda trace: trace.updated_at, reverse=True)
        if query.limit is not None:
            selected = selected[: query.limit]
        return [dataclasses.replace(trace) for trace in selected]

    async def _read_binding(self, query: BindingQuery) -> RemoteBinding | None:
        for key, row in reversed(self._bindings.items()):
            binding = row.binding
            if (
                binding.router_session_id == query.router_session_id
                and binding.agent_url == query.agent_url
                and binding.remote_skill == query.remote_skill
                and binding.tenant_id == query.tenant_id
                and binding.user_id == query.user_id
            ):
                return _binding(key, row)
        return None

    async def _read_bindings(self, router_session_id: str) -> list[RemoteBinding]:
        return [
            _binding(key, row)
            for key, row in self._bindings.items()
            if row.binding.router_session_id == router_session_id
        ]


def _binding(key: str, row: _BindingRow) -> RemoteBinding:
    metadata = decode_object(row.metadata_json, table="remote_bindings", row_id=key)
    return dataclasses.replace(row.binding, metadata=metadata)
