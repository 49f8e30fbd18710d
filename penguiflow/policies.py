"""Routing policies: pluggable overrides for which successors a router node picks.

A router (see ``penguiflow.patterns``) proposes targets; a policy sees a ``RoutingRequest`` and
returns a decision: None (drop the message), a node, a node name, or a sequence of them.
"""

from __future__ import annotations

import enum
import inspect
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

from .node import Node

if TYPE_CHECKING:
    from .core import Context

__all__ = [
    "DictRoutingPolicy",
    "PolicyCallable",
    "PolicyLike",
    "RoutingDecisionType",
    "RoutingPolicy",
    "RoutingRequest",
    "evaluate_policy",
]

#: What a policy returns: None drops the message; otherwise the targets, as nodes or names.
RoutingDecisionType: TypeAlias = Node | str | Sequence[Node | str] | None


@dataclass(slots=True)
class RoutingRequest:
    """Everything a policy may look at to decide where a message goes."""

    # The message is user data of any shape.
    message: Any
    """The message being routed (for ``union_router``, the validated object)."""
    context: Context
    """The router node's context."""
    node: Node
    """The router node."""
    proposed: tuple[Node, ...]
    """The targets the router picked before the policy ran."""
    trace_id: str | None
    """The message's trace, or None."""

    @property
    def node_name(self) -> str:
        """The router's name, or its id when it has no name."""
        return self.node.name or self.node.node_id

    @property
    def proposed_names(self) -> tuple[str, ...]:
        """The names (or ids) of the proposed targets, in order."""
        return tuple(node.name or node.node_id for node in self.proposed)


class RoutingPolicy(Protocol):
    """An object that picks a router's targets."""

    def select(
        self, request: RoutingRequest
    ) -> RoutingDecisionType | Awaitable[RoutingDecisionType]:
        """Return the decision for ``request``, or an awaitable of it.

        Raises:
            Exception: anything; the router node then fails like any node.
        """
        ...


#: A plain callable that works as a policy.
PolicyCallable: TypeAlias = Callable[
    [RoutingRequest], RoutingDecisionType | Awaitable[RoutingDecisionType]
]
#: Either form of policy.
PolicyLike: TypeAlias = RoutingPolicy | PolicyCallable

#: Turns a request into the key a ``DictRoutingPolicy`` looks up.
KeyGetter: TypeAlias = Callable[[RoutingRequest], str | None]


async def evaluate_policy(policy: PolicyLike, request: RoutingRequest) -> RoutingDecisionType:
    """Ask ``policy`` for its decision on ``request``.

    Uses ``policy.select`` if the policy has that attribute, else calls the policy itself; an
    awaitable result is awaited.

    Raises:
        Exception: whatever the policy raises, unchanged.
    """
    select: PolicyCallable = policy.select if hasattr(policy, "select") else policy
    decision = select(request)
    if inspect.isawaitable(decision):
        return await decision
    return decision


class _Unset(enum.Enum):
    """Marks an argument left out, where None is a meaningful value."""

    UNSET = enum.auto()


_UNSET: Final = _Unset.UNSET


def _trace_key(request: RoutingRequest) -> str | None:
    return request.trace_id


class DictRoutingPolicy:
    """A policy that looks the decision up in a mapping.

    The key comes from ``key_getter(request)`` (the trace id by default). A None key, or one
    not in the mapping, gives ``default``. Values are returned unchanged.
    """

    def __init__(
        self,
        mapping: Mapping[str, RoutingDecisionType],
        *,
        default: RoutingDecisionType = None,
        key_getter: KeyGetter | None = None,
    ) -> None:
        self._mapping: dict[str, RoutingDecisionType] = dict(mapping)
        self._default = default
        self._key_getter: KeyGetter = key_getter if key_getter is not None else _trace_key

    def select(self, request: RoutingRequest) -> RoutingDecisionType:
        """Return the mapped decision for ``request``'s key, or the default."""
        key = self._key_getter(request)
        if key is None:
            return self._default
        return self._mapping.get(key, self._default)

    def update_mapping(self, mapping: Mapping[str, RoutingDecisionType]) -> None:
        """Replace the whole mapping with a copy of ``mapping``."""
        self._mapping = dict(mapping)

    def set_default(
        self,
        decision: RoutingDecisionType | _Unset = _UNSET,
        *,
        default: RoutingDecisionType | _Unset = _UNSET,
    ) -> None:
        """Replace the decision used when no key matches.

        Args:
            decision: The new default decision (upstream's name for it).
            default: The same, by the name this package used before; kept so that callers
                passing ``default=`` keep working.

        Raises:
            TypeError: neither or both of ``decision`` and ``default`` were given.
        """
        if decision is _UNSET:
            if default is _UNSET:
                raise TypeError("set_default() missing 1 required argument: 'decision'")
            decision = default
        elif default is not _UNSET:
            raise TypeError("set_default() takes 'decision' or 'default', not both")
        self._default = decision

    @classmethod
    def from_json(
        cls,
        payload: str | bytes | bytearray,
        *,
        default: RoutingDecisionType = None,
        key_getter: KeyGetter | None = None,
    ) -> DictRoutingPolicy:
        """Build a policy from a JSON object mapping keys to decisions.

        Raises:
            json.JSONDecodeError: ``payload`` is not valid JSON.
            TypeError: the JSON does not decode to a mapping.
        """
        data = json.loads(payload)
        if not isinstance(data, Mapping):
            raise TypeError("JSON payload must decode to a mapping")
        return cls(data, default=default, key_getter=key_getter)

    @classmethod
    def from_json_file(
        cls,
        path: str | os.PathLike[str],
        *,
        default: RoutingDecisionType = None,
        key_getter: KeyGetter | None = None,
    ) -> DictRoutingPolicy:
        """Build a policy from a UTF-8 JSON file (read synchronously).

        Raises:
            OSError: the file cannot be read.
            json.JSONDecodeError: the file is not valid JSON.
            TypeError: the JSON does not decode to a mapping.
        """
        text = Path(path).read_text(encoding="utf-8")
        return cls.from_json(text, default=default, key_getter=key_getter)

    @classmethod
    def from_env(
        cls,
        env_var: str,
        *,
        loader: Callable[[str], object] | None = None,
        default: RoutingDecisionType = None,
        key_getter: KeyGetter | None = None,
    ) -> DictRoutingPolicy:
        """Build a policy from an environment variable, decoded by ``loader`` (JSON by default).

        Raises:
            KeyError: the variable is not set.
            TypeError: the loader does not return a mapping.
        """
        raw = os.environ.get(env_var)
        if raw is None:
            raise KeyError(f"Environment variable '{env_var}' not set")
        data = (loader if loader is not None else json.loads)(raw)
        if not isinstance(data, Mapping):
            raise TypeError("Policy loader must return a mapping")
        return cls(data, default=default, key_getter=key_getter)
