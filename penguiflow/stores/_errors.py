"""Every exception the state stores raise on purpose.

Hierarchy::

    Exception
     └── StoreError                 base of everything below; catch it to catch them all
          ├── WriteBufferFull                            put_nowait found no room
          ├── StoreClosedError       (also RuntimeError) you closed the store
          ├── StoreBrokenError       (also RuntimeError) the store's writer stopped on its own
          ├── StoreFailingError      (also RuntimeError) sync() gave up: commits keep failing
          ├── FlushTimeoutError      (also TimeoutError) flush(timeout_s) ran out; writes kept
          ├── WritesAbandonedError   (also TimeoutError) close(timeout_s) ran out; writes lost
          ├── IncompatibleStoreError (also RuntimeError) the database is not a penguiflow store
          │    └── SchemaVersionError                   ... made by a newer penguiflow
          └── CorruptRecordError     (also ValueError)   a stored row cannot be decoded

A failing commit is not an exception the caller sees: the writer retries it, logs
``state_store_write_failed`` and reports it in the store's ``status`` (see ``_writer``); only
a bounded ``flush`` or ``close`` that runs out of time raises, and ``sync`` (which the flow
uses to make a trace's start durable before ``emit`` returns) gives up once the status is
``failing``.
"""

from __future__ import annotations

__all__ = [
    "CorruptRecordError",
    "FlushTimeoutError",
    "IncompatibleStoreError",
    "SchemaVersionError",
    "StoreBrokenError",
    "StoreClosedError",
    "StoreError",
    "StoreFailingError",
    "WriteBufferFull",
    "WritesAbandonedError",
]


class StoreError(Exception):
    """Base class of the errors a state store raises on purpose."""


class StoreClosedError(StoreError, RuntimeError):
    """The store was closed: it accepts no more writes and answers no more reads.

    Attributes:
        store: A description of the store (its class and location).
    """

    def __init__(self, store: str) -> None:
        super().__init__(f"{store} is closed")
        self.store = store


class StoreBrokenError(StoreError, RuntimeError):
    """The store's writer task ended without ``close()``; writes can no longer be committed.

    Attributes:
        store: A description of the store (its class and location).
    """

    def __init__(self, store: str) -> None:
        super().__init__(f"the writer of {store} stopped unexpectedly; see the logged error")
        self.store = store


class StoreFailingError(StoreError, RuntimeError):
    """The store's commits have failed for ``failing_after_s`` in a row: ``sync()`` gave up.

    The writes stay queued and are retried; they are not known to be durable.

    Attributes:
        store: A description of the store (its class and location).
        error: The error of the last failed commit (None if the writer stopped on its own).
    """

    def __init__(self, store: str, error: BaseException | None) -> None:
        cause = f": {error!r}" if error is not None else ""
        super().__init__(f"{store} is failing, its commits keep failing{cause}")
        self.store = store
        self.error = error


class FlushTimeoutError(StoreError, TimeoutError):
    """``flush(timeout_s)`` ran out before the writes were committed; they stay queued.

    Attributes:
        store: A description of the store (its class and location).
        pending: Writes not committed when the time ran out.
        timeout_s: The seconds waited.
    """

    def __init__(self, store: str, pending: int, timeout_s: float) -> None:
        super().__init__(
            f"{store}: {pending} writes were still not committed after {timeout_s} s; "
            "they stay queued and are retried (see store.status and store.last_error)"
        )
        self.store = store
        self.pending = pending
        self.timeout_s = timeout_s


class WritesAbandonedError(StoreError, TimeoutError):
    """``close(timeout_s)`` ran out while commits failed: the pending writes were dropped.

    The store is closed and released all the same; ``state_store_writes_abandoned`` was
    logged with the same count.

    Attributes:
        store: A description of the store (its class and location).
        count: Writes lost (accepted, or waiting for room, and never committed).
        timeout_s: The seconds waited.
    """

    def __init__(self, store: str, count: int, timeout_s: float) -> None:
        super().__init__(
            f"{store} was closed with {count} writes still not committed after waiting "
            f"{timeout_s} s; they are lost"
        )
        self.store = store
        self.count = count
        self.timeout_s = timeout_s


class IncompatibleStoreError(StoreError, RuntimeError):
    """The database at a location is not a penguiflow store this code can use.

    Raised when the store opens, before it writes anything.

    Attributes:
        location: The file path, or the PostgreSQL database and schema.
        problem: What is wrong, in words.
    """

    def __init__(self, location: str, problem: str) -> None:
        super().__init__(f"cannot use {location} as a penguiflow state store: {problem}")
        self.location = location
        self.problem = problem


class SchemaVersionError(IncompatibleStoreError):
    """The database's schema was written by a newer penguiflow; it is left untouched.

    Attributes:
        found: The schema version recorded in the database.
        supported: The newest schema version this code knows.
    """

    def __init__(self, location: str, *, found: int, supported: int) -> None:
        super().__init__(
            location,
            f"its schema version is {found} but this penguiflow supports versions up to "
            f"{supported}; upgrade penguiflow (the database was not modified)",
        )
        self.found = found
        self.supported = supported


class CorruptRecordError(StoreError, ValueError):
    """A stored row cannot be decoded; the row is left as it is.

    Attributes:
        table: The table holding the row.
        row_id: The row's key (event id, trace id or binding key).
        problem: What failed to decode.
    """

    def __init__(self, table: str, row_id: object, problem: str) -> None:
        super().__init__(f"cannot decode row {row_id!r} of table {table!r}: {problem}")
        self.table = table
        self.row_id = row_id
        self.problem = problem


class WriteBufferFull(StoreError):
    """``BatchWriter.put_nowait`` found the buffer full; ``put`` would have waited."""

    def __init__(self, store: str, capacity: int) -> None:
        super().__init__(f"the write buffer of {store} is full ({capacity} writes)")
        self.store = store
        self.capacity = capacity
