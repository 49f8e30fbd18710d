"""The ``penguiflow`` command."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from . import _redis

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = argparse.ArgumentParser(prog="penguiflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _redis.add_commands(commands)
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
