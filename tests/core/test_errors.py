"""Spec section 3: ``FlowErrorCode`` and ``FlowError``."""

from __future__ import annotations

import pytest

import penguiflow
from penguiflow.errors import FlowError, FlowErrorCode

CODES = [
    "NODE_TIMEOUT",
    "NODE_EXCEPTION",
    "TRACE_CANCELLED",
    "DEADLINE_EXCEEDED",
    "HOP_BUDGET_EXHAUSTED",
    "TOKEN_BUDGET_EXHAUSTED",
    # Beyond the contract (issue: circuit breakers), appended after the contract's six.
    "CIRCUIT_OPEN",
]


def test_codes_are_str_enum_with_value_equal_to_name() -> None:
    assert [m.name for m in FlowErrorCode] == CODES
    for member in FlowErrorCode:
        assert member.value == member.name
        assert isinstance(member, str)
    assert FlowErrorCode("NODE_TIMEOUT") is FlowErrorCode.NODE_TIMEOUT


def test_exported_from_package() -> None:
    assert penguiflow.FlowError is FlowError
    assert penguiflow.FlowErrorCode is FlowErrorCode


def test_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        FlowError("t", "n", "CODE", "msg")  # type: ignore[misc]


def test_minimal_error() -> None:
    err = FlowError(trace_id=None, node_name=None, code="X", message="boom")
    assert isinstance(err, Exception)
    assert err.args == ("boom",)
    assert err.message == "boom"
    assert err.code == "X"
    assert err.metadata == {}
    assert err.original_exc is None
    assert err.node_id is None
    assert err.exception_type is None
    assert err.unwrap() is None
    assert str(err) == "[X] boom"
    assert err.to_payload() == {"code": "X", "message": "boom"}


def test_enum_code_is_stored_as_its_plain_value() -> None:
    err = FlowError(trace_id="t", node_name="n", code=FlowErrorCode.NODE_TIMEOUT, message="late")
    assert type(err.code) is str
    assert err.code == "NODE_TIMEOUT"
    assert str(err) == "[NODE_TIMEOUT] late trace=t node=n"


@pytest.mark.parametrize(
    ("trace_id", "node_name", "text"),
    [
        ("t1", None, "[C] m trace=t1"),
        (None, "n1", "[C] m node=n1"),
        ("t1", "n1", "[C] m trace=t1 node=n1"),
    ],
)
def test_str_appends_trace_and_node_when_set(
    trace_id: str | None, node_name: str | None, text: str
) -> None:
    err = FlowError(trace_id=trace_id, node_name=node_name, code="C", message="m")
    assert str(err) == text


def test_metadata_is_a_fresh_copy() -> None:
    source = {"attempt": 1}
    err = FlowError(trace_id=None, node_name=None, code="C", message="m", metadata=source)
    source["attempt"] = 99
    assert err.metadata == {"attempt": 1}
    assert type(err.metadata) is dict


def test_full_payload_key_order_and_copy() -> None:
    exc = ValueError("bad")
    err = FlowError(
        trace_id="t",
        node_name="n",
        code="C",
        message="m",
        original_exc=exc,
        node_id="id1",
        metadata={"k": 1},
    )
    payload = err.to_payload()
    assert list(payload) == [
        "code",
        "message",
        "trace_id",
        "node_name",
        "node_id",
        "exception_type",
        "metadata",
    ]
    assert payload == {
        "code": "C",
        "message": "m",
        "trace_id": "t",
        "node_name": "n",
        "node_id": "id1",
        "exception_type": "ValueError",
        "metadata": {"k": 1},
    }
    payload["metadata"]["k"] = 2
    assert err.metadata == {"k": 1}
    assert err.unwrap() is exc
    assert err.exception_type == "ValueError"


def test_payload_skips_unset_fields_individually() -> None:
    err = FlowError(trace_id=None, node_name="n", code="C", message="m", node_id=None)
    assert list(err.to_payload()) == ["code", "message", "node_name"]


def test_from_exception_message_precedence() -> None:
    exc = RuntimeError("from exc")
    explicit = FlowError.from_exception(
        trace_id="t", node_name="n", node_id="i", exc=exc, code="C", message="explicit"
    )
    assert explicit.message == "explicit"
    assert explicit.original_exc is exc
    assert (explicit.trace_id, explicit.node_name, explicit.node_id) == ("t", "n", "i")

    from_str = FlowError.from_exception(
        trace_id=None, node_name=None, node_id=None, exc=exc, code="C"
    )
    assert from_str.message == "from exc"
    assert from_str.args == ("from exc",)

    empty = FlowError.from_exception(
        trace_id=None, node_name=None, node_id=None, exc=KeyError(), code="C", message=""
    )
    assert empty.message == "KeyError"


def test_from_exception_code_and_metadata() -> None:
    err = FlowError.from_exception(
        trace_id="t",
        node_name="n",
        node_id="i",
        exc=TimeoutError(),
        code=FlowErrorCode.NODE_TIMEOUT,
        metadata={"attempt": 0},
    )
    assert err.code == "NODE_TIMEOUT"
    assert err.metadata == {"attempt": 0}
    assert err.exception_type == "TimeoutError"
    assert err.message == "TimeoutError"
