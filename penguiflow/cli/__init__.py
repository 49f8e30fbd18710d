"""The ``penguiflow`` command (also ``python -m penguiflow``).

Its commands are built with ``click``, an optional dependency (the ``cli`` extra): the core
of penguiflow depends on pydantic only. Without click, ``main`` says how to install it and
returns 2.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

MISSING_CLICK: Final = "penguiflow: the command needs click: pip install 'penguiflow-runtime[cli]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    if importlib.util.find_spec("click") is None:
        print(MISSING_CLICK, file=sys.stderr)
        return 2
    from ._app import run_command

    return run_command(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
