"""Nodes: async functions wrapped with a name, an identity and an execution policy."""

from __future__ import annotations

import inspect
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import CoroutineType

    from .registry import ModelRegistry

__all__ = ["BreakerPolicy", "Node", "NodeFunc", "NodePolicy"]

#: The shape of a node function: ``async def fn(message, ctx)``. Messages are user data, so
#: they enter as ``Any``.
NodeFunc = Callable[[Any, Any], Awaitable[Any]]

_VALIDATE_MODES = ("both", "in", "out", "none")


def _check_number(
    owner: str, name: str, value: float | None, *, allow_zero: bool = True, finite: bool = True
) -> None:
    """Raise ``ValueError`` naming ``owner.name`` unless ``value`` is None or a fit number.

    Fit: an int or float (not a bool), not NaN, not negative, not zero unless ``allow_zero``,
    and finite when ``finite``.
    """
    if value is None:
        return
    bad = (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value < 0
        or (value == 0 and not allow_zero)
        or (finite and math.isinf(value))
    )
    if bad:
        kind = "a finite number" if finite else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}.{name} must be {kind} {bound}, got {value!r}")


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a node's circuit breaker opens and how it recovers (opt-in per node).

    The breaker counts *messages*, not attempts: a message whose retries are exhausted is one
    failure; one whose call succeeds is a success from the moment the call returns, before its
    result is routed (which can wait on a full floe); a cancelled message counts for nothing.
    Closed, it opens after ``failures``
    consecutive failures, or when ``failure_ratio`` is set and at least that share of the
    last ``window`` messages failed (once ``window`` messages were seen). Open, every message
    is rejected at once with a ``FlowError`` of code ``CIRCUIT_OPEN`` and the node is not
    called. After ``cooldown_s`` (on the event loop's clock) it turns half-open and lets
    ``half_open_calls`` trial messages through: if they all succeed it closes, and the first
    failure opens it again. Each transition emits ``circuit_open``, ``circuit_half_open`` or
    ``circuit_closed``.

    Raises:
        ValueError: a count below 1, a negative cool-down, or a ratio outside (0, 1].
    """

    failures: int = 5
    """Consecutive failed messages that open the breaker."""
    failure_ratio: float | None = None
    """Share of failures in the last ``window`` messages that opens it; None to disable."""
    window: int = 20
    """How many recent messages the ratio looks at."""
    cooldown_s: float = 30.0
    """Seconds the breaker stays open before letting trial messages through."""
    half_open_calls: int = 1
    """Trial messages that must all succeed to close it again."""

    def __post_init__(self) -> None:
        for name in ("failures", "window", "half_open_calls"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BreakerPolicy.{name} must be an int >= 1, got {value!r}")
        _check_number("BreakerPolicy", "cooldown_s", self.cooldown_s, finite=False)
        ratio = self.failure_ratio
        if ratio is not None and not (isinstance(ratio, int | float) and 0 < ratio <= 1):
            raise ValueError(f"BreakerPolicy.failure_ratio must be in (0, 1], got {ratio!r}")


@dataclass(slots=True)
class NodePolicy:
    """How the runtime calls a node: validation, per-attempt timeout and retries.

    The delay before retry ``n`` (1-based) is ``backoff_base * backoff_mult ** (n - 1)``,
    capped by ``max_backoff`` when set.

    Raises:
        ValueError: ``validate`` is not one of ``both``, ``in``, ``out``, ``none``; a timeout,
            retry count or backoff value is negative, infinite or NaN (or the timeout is
            zero); ``concurrency`` is below 1; ``breaker`` is not a ``BreakerPolicy``.
    """

    validate: str = "both"
    """Which side to validate with the registry's adapters: ``both``, ``in``, ``out``, ``none``."""
    timeout_s: float | None = None
    """Seconds one attempt may take; None for no limit."""
    max_retries: int = 0
    """How many times a failed attempt is tried again."""
    backoff_base: float = 0.5
    """Seconds before the first retry."""
    backoff_mult: float = 2.0
    """Factor applied to the delay for each further retry."""
    max_backoff: float | None = None
    """Upper bound of any one delay; None for no bound."""
    concurrency: int = 1
    """Beyond the contract: how many invocations of the node may run at once (one worker
    each). With more than one, messages still leave each floe in FIFO order, but a later
    message may finish before an earlier one, so per-trace order is not kept."""
    breaker: BreakerPolicy | None = None
    """Beyond the contract: the node's circuit breaker, or None for none."""

    def __post_init__(self) -> None:
        if self.validate not in _VALIDATE_MODES:
            raise ValueError("validate must be one of 'both', 'in', 'out', 'none'")
        _check_number("NodePolicy", "timeout_s", self.timeout_s, allow_zero=False)
        retries = self.max_retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"NodePolicy.max_retries must be an int >= 0, got {retries!r}")
        _check_number("NodePolicy", "backoff_base", self.backoff_base)
        _check_number("NodePolicy", "backoff_mult", self.backoff_mult)
        _check_number("NodePolicy", "max_backoff", self.max_backoff)
        concurrency = self.concurrency
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"NodePolicy.concurrency must be an int >= 1, got {concurrency!r}")
        if self.breaker is not None and not isinstance(self.breaker, BreakerPolicy):
            raise ValueError(
                f"NodePolicy.breaker must be a BreakerPolicy or None, "
                f"got {type(self.breaker).__name__}"
            )

    def backoff_delay(self, attempt: int) -> float:
        """Return the sleep before ``attempt`` (1 for the first retry).

        Never raises for a valid policy: when the growth factor exceeds the largest float
        (after a thousand retries or so) the delay is infinite, and ``max_backoff``, when
        set, caps it like any other.
        """
        base = float(self.backoff_base)
        if base:
            try:
                delay = base * float(self.backoff_mult) ** (attempt - 1)
            except OverflowError:  # the factor alone exceeds any float
                delay = math.inf
        else:
            delay = 0.0  # and never 0 * inf
        cap = self.max_backoff
        return delay if cap is None else min(delay, float(cap))


def unawaited(node: Node, result: CoroutineType[Any, Any, Any]) -> TypeError:
    """Close the coroutine a node returned instead of awaiting it; return the error to raise.

    A node that forgot an ``await`` (``return lookup(x)``) would otherwise deliver the
    coroutine object as its result. Closing it keeps Python from warning, later and far from
    the cause, that it was never awaited.
    """
    result.close()
    return TypeError(
        f"Node '{node.name}' returned the coroutine {result.__qualname__!r}, which was never "
        "awaited (a missing 'await' in the node?)"
    )


def _new_node_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class Node:
    """An async function in a flow.

    A node equals only itself (its ``node_id`` is unique), so nodes serve as dict keys.

    Raises:
        TypeError: ``func`` is not declared with ``async def``.
        ValueError: ``func`` does not take exactly two positional parameters (message, ctx).
    """

    func: NodeFunc
    """The wrapped ``async def fn(message, ctx)``."""
    name: str | None = None
    """The node's name; when None or empty, ``func.__name__`` (else the ``node_id``)."""
    policy: NodePolicy = field(default_factory=NodePolicy)
    """Validation, timeout and retry settings."""
    allow_cycle: bool = False
    """Whether this node may send to itself (a controller loop)."""
    node_id: str = field(init=False, default_factory=_new_node_id)
    """A unique id, fresh for every node."""

    def __post_init__(self) -> None:
        if not inspect.iscoroutinefunction(self.func):
            raise TypeError("Node function must be declared with async def")
        if not self.name:  # None or "" (as upstream): the function's name
            self.name = getattr(self.func, "__name__", None) or self.node_id
        params = list(inspect.signature(self.func).parameters.values())
        if len(params) != 2:
            raise ValueError(
                f"Node '{self.name}' must accept exactly two parameters (message, ctx); "
                f"got {len(params)}"
            )
        if params[1].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise ValueError("Context parameter must be positional")

    def __hash__(self) -> int:
        return hash(self.node_id)

    def to(self, *nodes: Node) -> tuple[Node, tuple[Node, ...]]:
        """Declare this node's successors: ``a.to(b, c)``; ``a.to()`` declares none."""
        return self, nodes

    async def invoke(
        self,
        message: Any,
        ctx: Any,
        *,
        registry: ModelRegistry | None,
        validate: str | None = None,
    ) -> Any:
        """Call the node once, validating per policy against ``registry``.

        ``validate`` overrides the policy's mode (a running flow passes the mode its
        workers took when the flow started).

        Raises:
            KeyError: validation is on and the node is not in ``registry``.
            pydantic.ValidationError: the input or output does not fit its model.
            TypeError: the node returned a coroutine instead of awaiting it (see ``unawaited``).
        """
        if validate is None:
            validate = self.policy.validate
        if registry is None or validate == "none":
            result = await self.func(message, ctx)
            if inspect.iscoroutine(result):
                raise unawaited(self, result)
            return result
        in_adapter, out_adapter = registry.adapters(self.name or self.node_id)
        value = in_adapter.validate_python(message) if validate in ("in", "both") else message
        result = await self.func(value, ctx)
        if result is None:
            return None
        if inspect.iscoroutine(result):
            raise unawaited(self, result)
        if validate in ("out", "both"):
            return out_adapter.validate_python(result)
        return result
