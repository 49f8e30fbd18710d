"""Running the ``penguiflow`` command: in this process through click's runner, or as a real
subprocess (``python -m penguiflow``) from the repository's root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from penguiflow.cli._app import cli

if TYPE_CHECKING:
    from collections.abc import Callable

    from click.testing import Result

REPO = Path(__file__).resolve().parent.parent.parent
FLOWS = "tests/cli/flows.py"
"""The test flows, by path from the repository's root (the tests run from there)."""
SUBPROCESS_TIMEOUT_S = 25.0


@pytest.fixture(autouse=True)
def _from_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths such as ``tests/cli/flows.py`` are relative to the repository's root."""
    monkeypatch.chdir(REPO)


@pytest.fixture
def penguiflow() -> Callable[..., Result]:
    """``penguiflow(*args, input=...)``: the command run in this process; stdout and stderr
    are apart (``result.stdout``, ``result.stderr``)."""

    def invoke(*args: str, input: str | bytes | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


def run_process(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m penguiflow *args`` from the repository's root, as a user would run it."""
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "penguiflow", *args],
        input=input,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
