"""``python -m penguiflow``: the ``penguiflow`` command."""

import sys

from .cli import main

sys.exit(main())
