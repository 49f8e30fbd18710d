"""Helpers for inspecting flow events by hand: flat dicts ready to print or log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .metrics import FlowEvent

__all__ = ["format_flow_event"]


def format_flow_event(event: FlowEvent) -> dict[str, Any]:
    """Return ``event.to_payload()`` as a new dict, with its ``FlowError`` spread out.

    When the event carries a ``flow_error`` mapping (``event.error_payload``), the result also
    holds ``"flow_error"`` (a copy of it) and one ``flow_error_<key>`` entry per key, such as
    ``flow_error_code`` and ``flow_error_message``.

    Args:
        event: The event to format; it is not modified.

    Returns:
        A fresh dict the caller may mutate.
    """
    payload = dict(event.to_payload())
    error_payload = event.error_payload
    if error_payload is not None:
        payload["flow_error"] = dict(error_payload)
        for key, value in error_payload.items():
            payload[f"flow_error_{key}"] = value
    return payload
