"""The envelope: what one stream entry holds, as pydantic JSON (never pickle).

A ``Message`` travels with its payload dumped to JSON and the payload's model named in
``type``; the reader rebuilds the payload from that name, which must be one of the models the
flow declares (its registry's, penguiflow's own, or ``RedisBackend(types=...)``). A name from
anywhere else is refused: decoding never imports or runs anything the entry names.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..errors import FlowError
from ..types import WM, FinalAnswer, Headers, Message, PlanStep, StreamChunk, Thought
from .errors import EnvelopeError, EnvelopeTooLarge

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Envelope", "TypeTable", "check_size", "decode", "encode", "new_id"]

_BUILTIN: tuple[type[BaseModel], ...] = (WM, FinalAnswer, StreamChunk, PlanStep, Thought, Headers)


def new_id() -> str:
    """A fresh envelope id (96 random bits)."""
    return secrets.token_hex(12)


class Envelope(BaseModel):
    """One stream entry's content."""

    model_config = ConfigDict(extra="forbid")

    id: str
    """Unique per envelope: what emit deduplicates on."""
    kind: Literal["message", "item", "error"]
    """A ``Message``, any other item, or a ``FlowError`` bound for the caller."""
    reply_to: str
    """The result stream of the caller that started the trace."""
    trace_id: str | None = None
    """The trace the entry belongs to (a plain item's: the trace that produced it)."""
    type: str | None = None
    """The model of the payload (``message``) or of the item (``item``); None for plain JSON."""
    # Any: a user payload, already reduced to JSON values.
    body: Any = None


def _qualname(model: type) -> str:
    return f"{model.__module__}.{model.__qualname__}"


class TypeTable:
    """The payload models a flow may send, by name.

    A model travels under its ``__qualname__`` when no other model of the table shares it,
    else under its module-qualified name: two processes may import the same module under
    different names (a script run as ``__main__``, a test package), and the short name
    still matches.
    """

    __slots__ = ("_by_name", "_names")

    def __init__(self, models: Iterable[type[BaseModel]]) -> None:
        unique = dict.fromkeys((*_BUILTIN, *models))
        short: dict[str, list[type[BaseModel]]] = {}
        for model in unique:
            short.setdefault(model.__qualname__, []).append(model)
        self._names: dict[type[BaseModel], str] = {}
        self._by_name: dict[str, type[BaseModel]] = {}
        for name, same in short.items():
            for model in same:
                travels = name if len(same) == 1 else _qualname(model)
                self._names[model] = travels
                self._by_name[travels] = model
                self._by_name[_qualname(model)] = model

    def name_of(self, value: object, where: str) -> str | None:
        """The name ``value``'s model travels under; None for plain JSON values.

        Raises:
            EnvelopeError: ``value`` is a model the table does not hold.
        """
        if not isinstance(value, BaseModel):
            return None
        name = self._names.get(type(value))
        if name is None:
            raise EnvelopeError(_unknown(_qualname(type(value))), where)
        return name

    def resolve(self, name: str, where: str) -> type[BaseModel]:
        """The model called ``name``.

        Raises:
            EnvelopeError: no model of the flow has that name.
        """
        model = self._by_name.get(name)
        if model is None:
            raise EnvelopeError(_unknown(name), where)
        return model


def _unknown(name: str) -> str:
    return (
        f"payload type {name} is not in the flow's registry; register it for a node or pass "
        "it in RedisBackend(types=[...])"
    )


def check_size(text: str, limit: int, where: str) -> None:
    """Refuse an envelope's JSON longer than ``limit`` bytes (UTF-8).

    Raises:
        EnvelopeTooLarge: it is; the message names ``where``, the size and the limit.
    """
    # Most envelopes are far below the limit: a UTF-8 encoding is at most 4 bytes a
    # character, so only a long text is measured exactly.
    if len(text) * 4 > limit:
        size = len(text.encode())
        if size > limit:
            raise EnvelopeTooLarge(size, limit, where)


def encode(
    item: Any,
    *,
    reply_to: str,
    trace_id: str | None,
    types: TypeTable,
    where: str,
    limit: int,
    envelope_id: str | None = None,
) -> str:
    """Dump ``item`` (a node's output, an emitted message) into an envelope's JSON.

    Raises:
        EnvelopeError: its payload type is not in ``types``, or it is not JSON-serialisable.
        EnvelopeTooLarge: the JSON is over ``limit`` bytes (never for a ``FlowError``).
    """
    envelope = Envelope(
        id=envelope_id or new_id(), kind="item", reply_to=reply_to, trace_id=trace_id
    )
    try:
        if isinstance(item, Message):
            envelope.kind = "message"
            envelope.trace_id = item.trace_id
            envelope.type = types.name_of(item.payload, where)
            envelope.body = item.model_dump(mode="json")
        elif isinstance(item, FlowError):
            envelope.kind = "error"
            envelope.body = item.to_payload()
        else:
            envelope.type = types.name_of(item, where)
            envelope.body = to_jsonable_python(item)
    except PydanticSerializationError as exc:
        raise EnvelopeError(f"{type(item).__name__} cannot be sent as JSON: {exc}", where) from exc
    text = envelope.model_dump_json()
    if envelope.kind != "error":  # a FlowError always reaches its caller
        check_size(text, limit, where)
    return text


def decode(text: str, types: TypeTable, where: str) -> tuple[Envelope, Any]:
    """Read an envelope and rebuild its item.

    Raises:
        EnvelopeError: the text is not an envelope, or its body does not fit its type.
    """
    try:
        envelope = Envelope.model_validate_json(text)
    except ValidationError as exc:
        raise EnvelopeError(
            f"undecodable envelope ({exc.error_count()} errors: {exc})", where
        ) from exc
    try:
        return envelope, _rebuild(envelope, types, where)
    except (ValidationError, TypeError) as exc:
        raise EnvelopeError(
            f"envelope body does not fit its type {envelope.type}: {exc}", where
        ) from exc


def _rebuild(envelope: Envelope, types: TypeTable, where: str) -> Any:
    body = envelope.body
    if envelope.kind == "error":
        fields = dict(body)
        exception_type = fields.pop("exception_type", None)
        metadata = dict(fields.pop("metadata", {}) or {})
        if exception_type is not None:
            metadata.setdefault("exception_type", exception_type)
        return FlowError(**fields, metadata=metadata)
    if envelope.kind == "message":
        message = Message.model_validate(body)
        if envelope.type is not None:
            message.payload = types.resolve(envelope.type, where).model_validate(message.payload)
        return message
    if envelope.type is not None:
        return types.resolve(envelope.type, where).model_validate(body)
    return body
