"""What the command reports in one line when its input is wrong.

Hierarchy::

    Exception
     └── CommandError       bad input: the command says what and where, exits with ``status``
          ├── TargetError   (also ValueError) MODULE:ATTR does not give a flow
          └── StoreURLError (also ValueError) a store URL the command cannot open
"""

from __future__ import annotations

__all__ = ["USAGE_STATUS", "CommandError", "StoreURLError", "TargetError"]

#: The exit status of a command that could not do its job (bad target, store, option).
USAGE_STATUS = 2


class CommandError(Exception):
    """Bad input: reported as ``penguiflow: <message>`` on stderr, without a traceback.

    Attributes:
        status: The command's exit status.
    """

    def __init__(self, message: str, *, status: int = USAGE_STATUS) -> None:
        super().__init__(message)
        self.status = status


class TargetError(CommandError, ValueError):
    """``MODULE:ATTR`` does not import, has no such attribute, or gives no flow."""


class StoreURLError(CommandError, ValueError):
    """A store URL that is neither ``sqlite:///PATH`` nor ``postgresql://...``, or is malformed."""
