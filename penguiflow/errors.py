"""Every exception the runtime raises on purpose.

Hierarchy::

    Exception
     ├── FlowError            a node failed; delivered to the Rookery or carried in events
     └── TraceCancelled       a subflow call whose parent trace is (or was already) cancelled
    RuntimeError
     └── CycleError           the graph has a cycle that was not opted into
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["CycleError", "FlowError", "FlowErrorCode", "TraceCancelled"]


class FlowErrorCode(str, Enum):  # noqa: UP042 - the contract fixes a str-mixin Enum
    """Machine-readable failure codes; each value equals its name."""

    NODE_TIMEOUT = "NODE_TIMEOUT"
    NODE_EXCEPTION = "NODE_EXCEPTION"
    TRACE_CANCELLED = "TRACE_CANCELLED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    HOP_BUDGET_EXHAUSTED = "HOP_BUDGET_EXHAUSTED"
    TOKEN_BUDGET_EXHAUSTED = "TOKEN_BUDGET_EXHAUSTED"
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    """Beyond the contract: the node's circuit breaker is open, so it was not called."""


class FlowError(Exception):
    """A node's failure, packaged so that it can travel through the flow as a value.

    Attributes:
        trace_id: The trace whose message failed, if any.
        node_name: The failing node's name.
        node_id: The failing node's id.
        code: The failure code as a plain string.
        message: The human-readable message (also ``args[0]``).
        original_exc: The exception the node raised, if any.
        metadata: Extra facts (attempt, latency, timeout...), a fresh dict.
    """

    def __init__(
        self,
        *,
        trace_id: str | None,
        node_name: str | None,
        code: FlowErrorCode | str,
        message: str,
        original_exc: BaseException | None = None,
        node_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.trace_id = trace_id
        self.node_name = node_name
        self.node_id = node_id
        self.code: str = code.value if isinstance(code, FlowErrorCode) else str(code)
        self.message = message
        self.original_exc = original_exc
        self.metadata: dict[str, Any] = dict(metadata) if metadata is not None else {}

    @property
    def exception_type(self) -> str | None:
        """The class name of the original exception, or None."""
        if self.original_exc is None:
            return None
        return type(self.original_exc).__name__

    def __str__(self) -> str:
        text = f"[{self.code}] {self.message}"
        if self.trace_id is not None:
            text += f" trace={self.trace_id}"
        if self.node_name is not None:
            text += f" node={self.node_name}"
        return text

    def unwrap(self) -> BaseException | None:
        """Return the exception the node raised, if any."""
        return self.original_exc

    def to_payload(self) -> dict[str, Any]:
        """Return a JSON-friendly dict: code and message, then the fields that are set."""
        payload: dict[str, Any] = {"code": self.code, "message": self.message}
        for key in ("trace_id", "node_name", "node_id", "exception_type"):
            value = getattr(self, key)
            if value is not None:
                payload[key] = value
        if self.metadata:
            payload["metadata"] = dict(self.metadata)
        return payload

    @classmethod
    def from_exception(
        cls,
        *,
        trace_id: str | None,
        node_name: str | None,
        node_id: str | None,
        exc: BaseException,
        code: FlowErrorCode | str,
        message: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> FlowError:
        """Wrap ``exc``; the message defaults to ``str(exc)``, then to its class name."""
        text = message or str(exc) or type(exc).__name__
        return cls(
            trace_id=trace_id,
            node_name=node_name,
            node_id=node_id,
            code=code,
            message=text,
            original_exc=exc,
            metadata=metadata,
        )


class CycleError(RuntimeError):
    """The flow's graph has a cycle and ``allow_cycles`` was not set."""


class TraceCancelled(Exception):
    """The trace was cancelled; raised to callers waiting on it.

    Attributes:
        trace_id: The cancelled trace.
    """

    def __init__(self, trace_id: str) -> None:
        super().__init__(f"trace cancelled: {trace_id}")
        self.trace_id = trace_id
