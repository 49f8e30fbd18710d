from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.logging import ExtraFormatter, StructuredFormatter, configure_logging

if TYPE_CHECKING:
    from collections.abc import Iterator

EXPECTED_STANDARD = frozenset(
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


def make_record(
    msg: str = "hello %s",
    args: tuple[Any, ...] = ("world",),
    *,
    extra: dict[str, Any] | None = None,
    exc_info: Any = None,
    level: int = logging.INFO,
) -> logging.LogRecord:
    logger = logging.getLogger("test.logging.records")
    return logger.makeRecord(logger.name, level, "file.py", 10, msg, args, exc_info, extra=extra)


def test_standard_fields_on_both_formatters() -> None:
    assert StructuredFormatter.STANDARD_FIELDS == EXPECTED_STANDARD
    assert ExtraFormatter.STANDARD_FIELDS == EXPECTED_STANDARD
    assert isinstance(StructuredFormatter.STANDARD_FIELDS, frozenset)


def test_structured_basic_entry_and_timestamp() -> None:
    record = make_record()
    entry = json.loads(StructuredFormatter().format(record))
    assert entry["level"] == "INFO"
    assert entry["logger"] == "test.logging.records"
    assert entry["message"] == "hello world"
    assert entry["timestamp"] == datetime.fromtimestamp(record.created, tz=UTC).isoformat()
    assert datetime.fromisoformat(entry["timestamp"]).utcoffset() is not None
    assert "extra" not in entry
    assert "exception" not in entry


def test_structured_without_timestamp() -> None:
    entry = json.loads(StructuredFormatter(include_timestamp=False).format(make_record()))
    assert "timestamp" not in entry
    assert set(entry) == {"level", "logger", "message"}


class Opaque:
    def __str__(self) -> str:
        return "<opaque>"


def test_structured_extras_kept_or_stringified() -> None:
    record = make_record(extra={"count": 3, "nested": {"a": [1, 2]}, "obj": Opaque(), "text": "é"})
    text = StructuredFormatter().format(record)
    assert "é" in text  # ensure_ascii=False
    entry = json.loads(text)
    assert entry["extra"] == {
        "count": 3,
        "nested": {"a": [1, 2]},
        "obj": "<opaque>",
        "text": "é",
    }


def test_structured_exception() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = make_record(exc_info=sys.exc_info())
    entry = json.loads(StructuredFormatter().format(record))
    assert "ValueError: bad" in entry["exception"]
    assert entry["exception"].startswith("Traceback")


def test_structured_indent_spans_lines() -> None:
    flat = StructuredFormatter().format(make_record())
    indented = StructuredFormatter(indent=2).format(make_record())
    assert "\n" not in flat
    assert "\n" in indented
    assert json.loads(indented)["message"] == "hello world"


def test_extra_formatter_without_extras_has_no_brackets() -> None:
    assert ExtraFormatter().format(make_record()) == "hello world"


def test_extra_formatter_renders_strings_quoted_and_others_plain() -> None:
    record = make_record(extra={"node": "alpha", "count": 42, "active": True})
    assert ExtraFormatter().format(record) == 'hello world [node="alpha", count=42, active=True]'


def test_extra_formatter_truncates_long_strings_to_100() -> None:
    long_value = "x" * 150
    exact_value = "y" * 100
    text = ExtraFormatter().format(make_record(extra={"long": long_value, "exact": exact_value}))
    assert text == f'hello world [long="{"x" * 100}...", exact="{exact_value}"]'


def test_extra_formatter_uses_fmt_and_datefmt() -> None:
    formatter = ExtraFormatter(fmt="%(levelname)s|%(message)s")
    assert formatter.format(make_record(extra={"k": 1})) == "INFO|hello world [k=1]"


def test_extra_formatter_asctime_quirk() -> None:
    formatter = ExtraFormatter(fmt="%(asctime)s %(message)s", datefmt="%Y")
    text = formatter.format(make_record())
    year = text.split(" ", 1)[0]
    assert text == f'{year} hello world [asctime="{year}"]'


@pytest.fixture
def fresh_logger() -> Iterator[logging.Logger]:
    name = "test.logging.configure"
    logger = logging.getLogger(name)
    saved = (logger.level, list(logger.handlers), logger.propagate)
    yield logger
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    logger.propagate = saved[2]


@pytest.mark.parametrize(
    ("kwargs", "formatter_type"),
    [
        ({}, ExtraFormatter),
        ({"structured": True}, StructuredFormatter),
        ({"structured": True, "include_extras": False}, StructuredFormatter),
        ({"include_extras": False}, logging.Formatter),
    ],
)
def test_configure_logging_formatter_choice(
    fresh_logger: logging.Logger, kwargs: dict[str, Any], formatter_type: type
) -> None:
    old = logging.NullHandler()
    fresh_logger.addHandler(old)
    fresh_logger.addHandler(logging.NullHandler())
    configure_logging(logger_name=fresh_logger.name, **kwargs)
    (handler,) = fresh_logger.handlers
    assert type(handler) is logging.StreamHandler
    assert type(handler.formatter) is formatter_type
    assert fresh_logger.level == logging.INFO
    assert handler.level == logging.INFO
    assert fresh_logger.propagate is False
    if formatter_type is logging.Formatter:
        record = make_record(extra={"k": 1})
        assert handler.format(record) == "INFO:test.logging.records:hello world"


@pytest.mark.parametrize("level", ["WARNING", logging.WARNING])
def test_configure_logging_level_forms(fresh_logger: logging.Logger, level: int | str) -> None:
    configure_logging(level, logger_name=fresh_logger.name)
    assert fresh_logger.level == logging.WARNING
    assert fresh_logger.handlers[0].level == logging.WARNING


def test_configure_logging_defaults_to_penguiflow_logger() -> None:
    logger = logging.getLogger("penguiflow")
    saved = (logger.level, list(logger.handlers), logger.propagate)
    try:
        result = configure_logging()
        assert result is logger
        assert len(logger.handlers) == 1
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
        logger.propagate = saved[2]


def test_configured_handler_writes_to_stderr(
    fresh_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(logger_name=fresh_logger.name, structured=True)
    fresh_logger.info("ping", extra={"n": 1})
    err = capsys.readouterr().err
    entry = json.loads(err.strip())
    assert entry["message"] == "ping"
    assert entry["extra"] == {"n": 1}
