"""Log formatters that show a record's ``extra`` fields, and a one-call logging setup.

The runtime logs every event with ``extra=event.to_payload()``; these formatters make those
fields visible, as JSON (``StructuredFormatter``) or as ``key=value`` pairs
(``ExtraFormatter``).

Importing the package gives the ``penguiflow`` logger a ``NullHandler``, as a library should:
where records go is the application's choice. Without it, an application that configured no
logging would get Python's last-resort output on stderr, a bare message and a traceback for
every failed node attempt. Records still propagate, so ``logging.basicConfig()`` or any
handler on the root logger shows them; ``configure_logging`` sets up the ``penguiflow``
logger itself.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, ClassVar

__all__ = ["ExtraFormatter", "StructuredFormatter", "configure_logging"]

#: ``LogRecord`` attributes that are not extras.
_STANDARD_FIELDS: frozenset[str] = frozenset(
    {
        "name",
        "msg",
        "args",
        "created",
        "filename",
        "funcName",
        "levelname",
        "levelno",
        "lineno",
        "module",
        "msecs",
        "pathname",
        "process",
        "processName",
        "relativeCreated",
        "stack_info",
        "exc_info",
        "exc_text",
        "thread",
        "threadName",
        "taskName",
        "message",
    }
)
_MAX_EXTRA_TEXT = 100
_PLAIN_FORMAT = "%(levelname)s:%(name)s:%(message)s"
_LIBRARY_LOGGER = "penguiflow"


def _install_null_handler() -> None:
    """Give the package's top logger a ``NullHandler`` (once, even if this module reloads)."""
    library = logging.getLogger(_LIBRARY_LOGGER)
    if not any(type(handler) is logging.NullHandler for handler in library.handlers):
        library.addHandler(logging.NullHandler())


_install_null_handler()


def _extras(record: logging.LogRecord, standard: frozenset[str]) -> dict[str, Any]:
    """Return the record attributes that are not standard, i.e. what ``extra=`` added."""
    return {key: value for key, value in record.__dict__.items() if key not in standard}


def _json_safe(value: object) -> object:
    """Return ``value`` if JSON can encode it, else its ``str()``."""
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return str(value)
    return value


class StructuredFormatter(logging.Formatter):
    """Format each record as one JSON object.

    The object holds ``level``, ``logger``, ``message``, then ``timestamp`` (ISO-8601 UTC,
    if enabled), ``extra`` (only when the record has extras; values JSON cannot encode become
    their ``str()``) and ``exception`` (when ``exc_info`` is set).
    """

    STANDARD_FIELDS: ClassVar[frozenset[str]] = _STANDARD_FIELDS
    """Record attributes that are not extras."""

    def __init__(self, include_timestamp: bool = True, indent: int | None = None) -> None:
        """Create the formatter.

        Args:
            include_timestamp: Add the record's creation time.
            indent: Passed to ``json.dumps``; set it for multi-line output.
        """
        super().__init__()
        self.include_timestamp = include_timestamp
        self.indent = indent

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as JSON text."""
        entry: dict[str, Any] = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.include_timestamp:
            entry["timestamp"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat()
        extras = _extras(record, self.STANDARD_FIELDS)
        if extras:
            entry["extra"] = {key: _json_safe(value) for key, value in extras.items()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str, indent=self.indent)


def _render_extra(key: str, value: object) -> str:
    if isinstance(value, str):
        if len(value) > _MAX_EXTRA_TEXT:
            value = value[:_MAX_EXTRA_TEXT] + "..."
        return f'{key}="{value}"'
    return f"{key}={value}"


class ExtraFormatter(logging.Formatter):
    """Format records as the base ``Formatter`` does, then append ``[key=value, ...]``.

    String extras are quoted and cut to 100 characters (followed by ``...``); other values
    are shown with ``str()``. Without extras nothing is appended. Attributes the base format
    adds to the record, such as ``asctime``, count as extras.
    """

    STANDARD_FIELDS: ClassVar[frozenset[str]] = _STANDARD_FIELDS
    """Record attributes that are not extras."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        """Create the formatter.

        Args:
            fmt: A ``%``-style format; None shows just the message.
            datefmt: The ``asctime`` format.
        """
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        """Return the base text, followed by the extras in brackets when there are any."""
        base = super().format(record)
        extras = _extras(record, self.STANDARD_FIELDS)
        if not extras:
            return base
        rendered = ", ".join(_render_extra(key, value) for key, value in extras.items())
        return f"{base} [{rendered}]"


def configure_logging(
    level: int | str = logging.INFO,
    *,
    structured: bool = False,
    include_extras: bool = True,
    logger_name: str = _LIBRARY_LOGGER,
) -> logging.Logger:
    """Send a logger's records to stderr in one of the formats above.

    Sets the logger's level, removes all its handlers, adds one ``StreamHandler`` at the
    same level, and stops propagation to the root logger.

    Args:
        level: A level number or name, e.g. ``logging.WARNING`` or ``"WARNING"``.
        structured: Use ``StructuredFormatter`` (JSON lines).
        include_extras: When not structured, use ``ExtraFormatter``; otherwise
            ``"%(levelname)s:%(name)s:%(message)s"``.
        logger_name: The logger to configure.

    Returns:
        The configured logger.

    Raises:
        ValueError: ``level`` is an unknown level name.
    """
    logger = logging.getLogger(logger_name)
    logger.setLevel(level)
    for existing in list(logger.handlers):
        logger.removeHandler(existing)
    handler = logging.StreamHandler()
    handler.setLevel(level)
    formatter: logging.Formatter
    if structured:
        formatter = StructuredFormatter()
    elif include_extras:
        formatter = ExtraFormatter()
    else:
        formatter = logging.Formatter(_PLAIN_FORMAT)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.propagate = False
    return logger
