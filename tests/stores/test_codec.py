"""The stores' JSON codec: strict JSON out for any value, clear errors for bad JSON in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, model_serializer

from penguiflow.stores import CorruptRecordError
from penguiflow.stores._codec import (
    clean_text,
    decode_object,
    encode_json,
    encode_json_many,
    stringify,
    try_encode_json,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_json_values_round_trip_exactly(value: dict[str, Any]) -> None:
    text = encode_json(value)
    assert text.isascii()
    assert decode_object(text, table="events", row_id=1) == value


@given(
    st.recursive(
        st.none()
        | st.floats()
        | st.builds(object)
        | st.sets(st.integers(), max_size=3)
        | st.binary(max_size=4),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.tuples(st.integers()) | st.text(max_size=3), children, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_anything_encodes_to_strict_json(value: object) -> None:
    text = encode_json({"v": value})
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict constant {name}"))


@given(
    st.lists(
        st.recursive(
            st.none() | st.floats() | st.text() | st.sampled_from(["NaN", "Infinity", "é"]),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=3), children, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=6,
    )
)
def test_many_values_encode_as_each_alone(values: list[object]) -> None:
    assert encode_json_many(values) == [encode_json(value) for value in values]


def test_many_values_one_of_which_the_fast_path_refuses() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    values = [{"a": 1}, cycle, {"b": float("nan")}, "é"]
    assert encode_json_many(values) == [encode_json(value) for value in values]
    assert encode_json_many(values[::2]) == ['{"a":1}', '{"b":"nan"}']


def test_text_beyond_ascii_is_escaped() -> None:
    assert encode_json({"é": "\u2028 \U0001f427"}) == '{"\\u00e9":"\\u2028 \\ud83d\\udc27"}'


def test_unprintable_values_and_deep_nesting() -> None:
    class NoStr:
        def __str__(self) -> str:
            raise RuntimeError("no str")

    class Nothing(NoStr):
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert stringify(NoStr()).startswith("<")
    assert (
        stringify(Nothing())
        == "<unprintable test_unprintable_values_and_deep_nesting.<locals>.Nothing>"
    )
    deep: list[Any] = []
    cursor = deep
    for _ in range(5000):
        cursor.append([])
        cursor = cursor[0]
    decoded = json.loads(encode_json({"deep": deep, "inf": float("-inf")}))
    assert decoded["inf"] == "-inf"


def test_what_the_fast_path_refuses_gets_a_safe_form() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    value = {
        "nan": float("nan"),
        "inf": float("inf"),
        "lone": "a\ud800b",
        "nul": "a\x00b",
        "cycle": cycle,
        "not_utf8": b"\xff",
    }
    assert try_encode_json(value) is None
    text = encode_json(value)
    assert text.isascii()
    assert json.loads(text) == {
        "nan": "nan",
        "inf": "inf",
        "lone": "a\ud800b",  # escaped, so kept exactly
        "nul": "a\x00b",
        "cycle": ["<cycle>"],
        "not_utf8": "b'\\xff'",
    }


class Point(BaseModel):
    x: int
    y: float


def test_types_pydantic_knows_have_one_form_on_either_path() -> None:
    """A datetime, a set, a model and a UUID encode alike whether the fast path takes the
    value or a NaN beside them sends it down the fallback."""
    known = {
        "at": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "tags": {"a"},
        "point": Point(x=1, y=2.5),
        "id": UUID(int=1),
    }
    fast = json.loads(encode_json(known))
    assert fast == {
        "at": "2024-05-01T12:30:00Z",
        "tags": ["a"],
        "point": {"x": 1, "y": 2.5},
        "id": "00000000-0000-0000-0000-000000000001",
    }
    assert json.loads(encode_json({**known, "nan": float("nan")})) == {**fast, "nan": "nan"}


def test_strings_naming_constants_and_raising_serializers() -> None:
    class Broken(BaseModel):
        @model_serializer
        def _serialize(self) -> dict[str, Any]:
            raise RuntimeError("cannot serialize")

        def __str__(self) -> str:
            return "broken"

    words = {"s": "NaN, Infinity, -Infinity"}
    assert json.loads(encode_json(words)) == words
    assert json.loads(encode_json({"b": Broken()})) == {"b": "broken"}


def test_clean_text() -> None:
    assert clean_text(None) is None
    plain = "abc"
    assert clean_text(plain) is plain
    assert clean_text("a\x00b") == "a\ufffdb"
    assert clean_text("é\ud800") == "é?"
    assert clean_text(42) == "42"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{oops", "invalid JSON"),
        ("[1]", "expected a JSON object, found list"),
        (b"{}", "expected JSON text, found bytes"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_decode_errors_name_table_and_row(text: object, problem: str) -> None:
    with pytest.raises(CorruptRecordError, match=problem) as caught:
        decode_object(text, table="traces", row_id="t-1")
    assert "row 't-1' of table 'traces'" in str(caught.value)
