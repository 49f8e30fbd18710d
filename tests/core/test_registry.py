"""Spec section 5: ``ModelRegistry``."""

from __future__ import annotations

import pydantic
import pytest

import penguiflow
from penguiflow.registry import ModelRegistry
from penguiflow.types import Headers, Message


class In(pydantic.BaseModel):
    x: int


class Out(pydantic.BaseModel):
    y: str


def test_register_and_look_up() -> None:
    reg = ModelRegistry()
    assert not reg.has("a")
    reg.register("a", In, Out)
    assert reg.has("a")
    assert reg.models("a") == (In, Out)
    in_adapter, out_adapter = reg.adapters("a")
    assert isinstance(in_adapter, pydantic.TypeAdapter)
    assert in_adapter.validate_python({"x": "5"}) == In(x=5)
    assert out_adapter.validate_python({"y": "s"}) == Out(y="s")
    assert penguiflow.ModelRegistry is ModelRegistry


def test_message_models_are_allowed() -> None:
    reg = ModelRegistry()
    reg.register("m", Message, Message)
    in_adapter, _ = reg.adapters("m")
    msg = in_adapter.validate_python({"payload": 1, "headers": {"tenant": "t"}})
    assert isinstance(msg, Message)
    assert msg.headers == Headers(tenant="t")


def test_duplicate_name_is_rejected_before_types_are_checked() -> None:
    reg = ModelRegistry()
    reg.register("a", In, Out)
    with pytest.raises(ValueError) as info:
        reg.register("a", In, Out)
    assert str(info.value) == "Node 'a' already registered"
    with pytest.raises(ValueError, match=r"^Node 'a' already registered$"):
        reg.register("a", int, int)  # type: ignore[arg-type]
    assert reg.models("a") == (In, Out)


@pytest.mark.parametrize(
    ("in_model", "out_model"),
    [(int, Out), (In, dict), (In(x=1), Out), (In, None)],
)
def test_non_model_types_are_rejected(in_model: object, out_model: object) -> None:
    reg = ModelRegistry()
    with pytest.raises(TypeError) as info:
        reg.register("a", in_model, out_model)  # type: ignore[arg-type]
    assert str(info.value) == "Models must inherit from pydantic.BaseModel"
    assert not reg.has("a")


@pytest.mark.parametrize("method", ["adapters", "models"])
def test_unknown_names_raise_key_error_with_exact_text(method: str) -> None:
    reg = ModelRegistry()
    with pytest.raises(KeyError) as info:
        getattr(reg, method)("ghost")
    assert info.value.args == ("Node 'ghost' not registered",)
