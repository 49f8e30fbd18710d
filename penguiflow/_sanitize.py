"""Turning user data into what may be shown: text, redacted, then cut to a bound.

Payloads, trace inputs, event details and error messages are the user's data. Each one
reaches the live page (``penguiflow.web``) or the terminal (``penguiflow history``) as a
single string: JSON text for structures (``repr`` for what JSON cannot
hold), passed through the user's ``redact`` callable and only then cut to ``max_chars``, so
that a secret is found whole before the cut can split it. The page renders these strings as
text, never as markup. (Failures of ``redact`` are logged as ``web_redact_failed`` on
``penguiflow.web``, wherever the text is shown.)
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Final, final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PAGE_MAX_CHARS", "REDACTION_FAILED", "Sanitizer"]

PAGE_MAX_CHARS: Final = 2000
"""The longest text the live page shows for one piece of user data, by default."""
REDACTION_FAILED: Final = "[hidden: the redact function failed]"
"""Shown instead of a value whose ``redact`` call raised: nothing unredacted gets out."""

logger: Final = logging.getLogger("penguiflow.web")


@final
class Sanitizer:
    """Renders user data as bounded, redacted text.

    Raises:
        TypeError: ``redact`` is given and is not callable.
        ValueError: ``max_chars`` is not an int >= 32 (room for the cut marker).
    """

    __slots__ = ("max_chars", "redact")

    def __init__(self, redact: Callable[[str], str] | None, max_chars: int) -> None:
        if redact is not None and not callable(redact):
            raise TypeError(f"redact must be a callable str -> str, got {type(redact).__name__}")
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 32:
            raise ValueError(f"max_payload_chars must be an int >= 32, got {max_chars!r}")
        self.redact = redact
        """The user's redaction, applied to every value before it is cut."""
        self.max_chars = max_chars
        """The longest text shown for one value, cut marker included."""

    def text(self, value: object) -> str:
        """Return ``value`` as redacted text of at most ``max_chars`` characters.

        A string is taken as it is; anything else is rendered as JSON (``repr`` for what JSON
        cannot encode). If ``redact`` raises, the value is replaced by ``REDACTION_FAILED``
        and the failure logged (without the value).
        """
        text = value if isinstance(value, str) else _as_json(value)
        if self.redact is not None:
            try:
                redacted: object = self.redact(text)  # checked: user code
            except Exception as error:
                logger.error(
                    "web_redact_failed",
                    extra={"event": "web_redact_failed", "exception": type(error).__name__},
                )
                return REDACTION_FAILED
            if not isinstance(redacted, str):
                logger.error(
                    "web_redact_failed",
                    extra={"event": "web_redact_failed", "returned": type(redacted).__name__},
                )
                return REDACTION_FAILED
            text = redacted
        return self._cut(text)

    def optional(self, value: object) -> str | None:
        """``text(value)``, or None for None."""
        return None if value is None else self.text(value)

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        marker = f"\u2026 [{len(text)} chars]"
        keep = self.max_chars - len(marker)
        return text[:keep] + marker


def _as_json(value: object) -> str:
    try:
        return json.dumps(value, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):  # keys JSON cannot hold, or a structure that holds itself
        return repr(value)
