"""The flow runtime: ``PenguiFlow``, ``Context``, floes, endpoints and subflows.

A façade: the engine lives in ``penguiflow._runtime``.
"""

from __future__ import annotations

from ._runtime.constants import BUDGET_EXCEEDED_TEXT as BUDGET_EXCEEDED_TEXT
from ._runtime.constants import DEADLINE_EXCEEDED_TEXT as DEADLINE_EXCEEDED_TEXT
from ._runtime.constants import DEFAULT_QUEUE_MAXSIZE as DEFAULT_QUEUE_MAXSIZE
from ._runtime.constants import TOKEN_BUDGET_EXCEEDED_TEXT as TOKEN_BUDGET_EXCEEDED_TEXT
from ._runtime.context import Context as Context
from ._runtime.endpoints import OPEN_SEA as OPEN_SEA
from ._runtime.endpoints import ROOKERY as ROOKERY
from ._runtime.endpoints import Endpoint as Endpoint
from ._runtime.floe import Floe as Floe
from ._runtime.flow import PenguiFlow as PenguiFlow
from ._runtime.flow import create as create
from ._runtime.subflow import PlaybookFactory as PlaybookFactory
from ._runtime.subflow import call_playbook as call_playbook
from .errors import CycleError as CycleError
from .errors import TraceCancelled as TraceCancelled

__all__ = [
    "DEFAULT_QUEUE_MAXSIZE",
    "Context",
    "CycleError",
    "Floe",
    "PenguiFlow",
    "call_playbook",
    "create",
]
