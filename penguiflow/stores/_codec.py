"""JSON and text encoding that never makes a write fail, and decoding that names what broke.

Design note: a store commits in batches and retries a failed batch until it succeeds, so a
single value the database refuses would stall the writer for good. Everything written is
therefore made acceptable first: JSON is strict (no NaN, ASCII only, so NUL characters and
lone surrogates travel as escapes) and anything ``json`` cannot encode is stringified; text columns
lose NUL characters and lone surrogates (PostgreSQL rejects the first, UTF-8 the second).
"""

from __future__ import annotations

import json
import json.encoder
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from ._errors import CorruptRecordError

__all__ = ["clean_text", "decode_object", "encode_json", "stringify", "try_encode_json"]

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


_ENCODER: Final = json.JSONEncoder(
    default=stringify, allow_nan=False, separators=(",", ":"), ensure_ascii=True
)
# ``JSONEncoder.encode`` builds a C encoder per call; building it once saves a fifth of the
# time of a typical event payload. Same settings as ``_ENCODER`` except the cycle check (a
# shared check dict is not safe across calls): a cycle ends in RecursionError and the
# fallback below, as nesting too deep does.
_MAKE_C_ENCODER: Final[Callable[..., Callable[[object, int], Iterable[str]]] | None] = getattr(
    json.encoder, "c_make_encoder", None
)  # None on a Python built without the _json accelerator
_FAST_ENCODE: Final = (
    None
    if _MAKE_C_ENCODER is None
    else _MAKE_C_ENCODER(
        None, stringify, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
    )
)


def encode_json(value: object) -> str:
    """Encode ``value`` as strict JSON text; never raises.

    Values ``json`` does not know are stringified. If the fast encoding fails (a non-finite
    float, a key that is not a string or number, a cycle, nesting too deep), the value is
    first rebuilt from JSON-safe parts: floats ``nan``/``inf`` and odd keys become strings,
    a cycle becomes ``"<cycle>"`` and anything deeper than 100 levels is stringified.
    """
    text = try_encode_json(value)
    return _ENCODER.encode(_safe(value, 0, set())) if text is None else text


def try_encode_json(value: object) -> str | None:
    """Encode ``value`` as strict JSON text, or return None where ``encode_json`` falls back."""
    try:
        if _FAST_ENCODE is None:
            return _ENCODER.encode(value)
        return "".join(_FAST_ENCODE(value, 0))
    except (TypeError, ValueError, RecursionError):
        return None


def _safe(value: object, depth: int, path: set[int]) -> object:
    """Rebuild ``value`` from parts the strict encoder accepts (see ``encode_json``)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else stringify(value)
    if depth >= _MAX_DEPTH or not isinstance(value, (Mapping, list, tuple)):
        return stringify(value)
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
