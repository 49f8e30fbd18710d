"""The page's tests never read a token from the developer's environment."""

from __future__ import annotations

import pytest

from penguiflow.web import TOKEN_ENV


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset ``$PENGUIFLOW_WEB_TOKEN``; a test that needs it sets it."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
