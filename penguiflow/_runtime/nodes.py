"""What a flow keeps per node beyond its workers: breaker, last error, restarts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .breaker import Breaker

if TYPE_CHECKING:
    from ..health import NodeError
    from ..node import BreakerPolicy, Node

__all__ = ["NodeStatus"]


class NodeStatus:
    """Shared by a node's workers; read by ``PenguiFlow.health()``."""

    __slots__ = ("breaker", "last_error", "restarts")

    def __init__(self, node: Node) -> None:
        self.breaker: Breaker | None = None
        self.configure(node.policy.breaker)
        self.last_error: NodeError | None = None
        """The node's last final failure."""
        self.restarts = 0
        """Times one of its workers resumed after a fault of the runtime itself."""

    def configure(self, policy: BreakerPolicy | None) -> None:
        """Use the breaker ``policy`` from now on (called when the flow starts).

        The breaker keeps its state while its policy is unchanged; a new policy starts closed.
        """
        if policy is None:
            self.breaker = None
        elif self.breaker is None or self.breaker.policy != policy:
            self.breaker = Breaker(policy)
