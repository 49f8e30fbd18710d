"""The two synthetic ends of every flow: OpenSea (ingress) and Rookery (egress)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from ..node import Node

__all__ = ["OPEN_SEA", "ROOKERY", "Endpoint", "Target"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A named end of the graph; equal and hashed by name."""

    name: str
    """``"OpenSea"`` or ``"Rookery"`` for the built-in ends."""


OPEN_SEA: Final = Endpoint("OpenSea")
ROOKERY: Final = Endpoint("Rookery")

Target: TypeAlias = Node | Endpoint | Sequence[Node | Endpoint] | None
"""What ``to`` / ``from_`` accept: one node or endpoint, a sequence of them, or None for all."""
