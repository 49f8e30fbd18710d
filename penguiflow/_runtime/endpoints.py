"""The two synthetic ends of every flow: OpenSea (ingress) and Rookery (egress)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["OPEN_SEA", "ROOKERY", "Endpoint"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A named end of the graph; equal and hashed by name."""

    name: str
    """``"OpenSea"`` or ``"Rookery"`` for the built-in ends."""


OPEN_SEA: Final = Endpoint("OpenSea")
ROOKERY: Final = Endpoint("Rookery")
