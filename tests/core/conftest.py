"""Every test here runs over both engine paths and several observer counts (see
``tests/differential.py``)."""

from differential import engine_mode as engine_mode
