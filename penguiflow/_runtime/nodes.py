"""What a flow keeps per node beyond its workers: breaker, last error, restarts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .breaker import Breaker

if TYPE_CHECKING:
    from ..health import NodeError
    from ..node import Node

__all__ = ["NodeStatus"]


class NodeStatus:
    """Shared by a node's workers; read by ``PenguiFlow.health()``."""

    __slots__ = ("breaker", "last_error", "restarts")

    def __init__(self, node: Node) -> None:
        policy = node.policy.breaker
        self.breaker = Breaker(policy) if policy is not None else None
        self.last_error: NodeError | None = None
        """The node's last final failure."""
        self.restarts = 0
        """Times one of its workers resumed after a fault of the runtime itself."""
