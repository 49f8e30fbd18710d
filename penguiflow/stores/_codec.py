"""JSON and text encoding that never makes a write fail, and decoding that names what broke.

Design note: a store commits in batches and retries a failed batch until it succeeds, so a
single value the database refuses would stall the writer for good. Everything written is
therefore made acceptable first: JSON is strict (no NaN, ASCII only, so NUL characters and
lone surrogates travel as escapes) and anything JSON has no form for is stringified; text
columns lose NUL characters and lone surrogates (PostgreSQL rejects the first, UTF-8 the second).

JSON is written by ``pydantic_core.to_json``, which gives what pydantic knows its JSON form
(datetimes in ISO 8601, sets as arrays, models and dataclasses as objects). Where it refuses
a value (a lone surrogate, a cycle, nesting past its limit, bytes that are not UTF-8) or writes
a bare ``NaN``/``Infinity``, the value is rebuilt from JSON-safe parts, the same forms included,
and written by the standard library's ``json``, which escapes lone surrogates rather than
refusing them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic_core import to_json, to_jsonable_python

from ._errors import CorruptRecordError

__all__ = [
    "clean_text",
    "decode_object",
    "encode_json",
    "encode_json_many",
    "stringify",
    "try_encode_json",
]

_MAX_DEPTH: Final = 100
_REPLACEMENT: Final = "\ufffd"


def stringify(value: object) -> str:
    """Return ``str(value)``, or its ``repr``, or a placeholder if both raise."""
    try:
        return str(value)
    except Exception:  # a user's __str__ may raise anything; fall back to repr
        try:
            return repr(value)
        except Exception:  # and so may __repr__: name the type instead
            return f"<unprintable {type(value).__qualname__}>"


_STRICT: Final = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=True)
"""The fallback's encoder; it only ever sees what ``_safe`` rebuilt."""


def encode_json(value: object) -> str:
    """Encode ``value`` as strict JSON text; never raises.

    Values without a JSON form are stringified. If the fast encoding fails (a non-finite
    float, a lone surrogate, a cycle, nesting too deep), the value is first rebuilt from
    JSON-safe parts: floats ``nan``/``inf`` and keys that are not strings become strings, a
    cycle becomes ``"<cycle>"`` and anything deeper than 100 levels is stringified.
    """
    text = try_encode_json(value)
    return _STRICT.encode(_safe(value, 0, set())) if text is None else text


def try_encode_json(value: object) -> str | None:
    """Encode ``value`` as strict JSON text, or return None where ``encode_json`` falls back."""
    try:
        data = to_json(value, fallback=stringify)
        # pydantic_core escapes to ASCII several times slower than it writes UTF-8, and for
        # ASCII text both give the same bytes: only text with other characters pays for it.
        if not data.isascii():
            data = to_json(value, ensure_ascii=True, fallback=stringify)
    except Exception:  # pydantic runs user code (model serializers...), which may raise anything
        return None
    return None if _maybe_non_finite(data) else data.decode("ascii")


def encode_json_many(values: Sequence[object]) -> list[str]:
    """Return ``encode_json`` of each of ``values``, checking the fast encodings in one go."""
    try:
        encoded = [to_json(value, fallback=stringify) for value in values]
    except Exception:  # as in try_encode_json: user code may raise anything
        return [encode_json(value) for value in values]
    # Checks cost per call about what the fast encoding of a small object does: they run on
    # all the texts at once, and one by one only if the batch fails them.
    joined = b"".join(encoded)
    if joined.isascii() and not _maybe_non_finite(joined):
        return [data.decode("ascii") for data in encoded]
    return [
        data.decode("ascii")
        if data.isascii() and not _maybe_non_finite(data)
        else encode_json(value)
        for value, data in zip(values, encoded, strict=True)
    ]


def _maybe_non_finite(data: bytes) -> bool:
    """Whether JSON ``data`` may hold a bare NaN/Infinity (a non-finite float).

    Strict JSON lacks them. A string that holds either word counts too: its value takes the
    fallback, slower and just as correct. A search for one byte is far cheaper than for a
    word, and most texts hold neither capital.
    """
    return (b"N" in data and b"NaN" in data) or (b"I" in data and b"Infinity" in data)


def _safe(value: object, depth: int, path: set[int]) -> object:
    """Rebuild ``value`` from parts the strict encoder accepts (see ``encode_json``)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else stringify(value)
    if depth >= _MAX_DEPTH:
        return stringify(value)
    if not isinstance(value, (Mapping, list, tuple)):
        # Give it the form the fast path would have; that form is JSON data, rebuilt in turn.
        return _safe(_jsonable(value), depth + 1, path)
    if id(value) in path:
        return "<cycle>"
    path.add(id(value))
    try:
        if isinstance(value, Mapping):
            return {
                key if isinstance(key, str) else stringify(key): _safe(item, depth + 1, path)
                for key, item in value.items()
            }
        return [_safe(item, depth + 1, path) for item in value]
    finally:
        path.discard(id(value))


def _jsonable(value: object) -> object:
    """Return ``value`` as pydantic turns it into JSON data, or stringified if that fails."""
    try:
        return to_jsonable_python(value, fallback=stringify)
    except Exception:  # as in try_encode_json: user code may raise anything
        return stringify(value)


def clean_text(value: object) -> str | None:
    """Return ``value`` fit for a text column: no NUL, no lone surrogate, a ``str`` or None.

    The common case (ASCII without NUL) returns ``value`` itself after two cheap checks.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return stringify(value)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", _REPLACEMENT) if "\x00" in value else value


def decode_object(text: object, *, table: str, row_id: object) -> dict[str, Any]:
    """Decode a JSON object stored in ``table`` for row ``row_id``.

    Returns:
        The decoded dict; its values are whatever JSON held (user data, hence ``Any``).

    Raises:
        CorruptRecordError: ``text`` is not JSON text, or not a JSON object.
    """
    if not isinstance(text, str):
        raise CorruptRecordError(table, row_id, f"expected JSON text, found {type(text).__name__}")
    try:
        decoded = json.loads(text)
    except ValueError as exc:
        raise CorruptRecordError(table, row_id, f"invalid JSON ({exc})") from exc
    except RecursionError as exc:
        raise CorruptRecordError(table, row_id, "JSON nested too deeply") from exc
    if not isinstance(decoded, dict):
        raise CorruptRecordError(
            table, row_id, f"expected a JSON object, found {type(decoded).__name__}"
        )
    return decoded
