"""Spec section 4: ``NodePolicy`` and ``Node`` (construction, identity, ``invoke``)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pydantic
import pytest

import penguiflow
from penguiflow.node import Node, NodePolicy
from penguiflow.registry import ModelRegistry


class In(pydantic.BaseModel):
    x: int


class Out(pydantic.BaseModel):
    y: int


async def fn(message: Any, ctx: Any) -> Any:
    return message


# --------------------------------------------------------------------------- NodePolicy


def test_policy_defaults_and_slots() -> None:
    p = NodePolicy()
    assert (p.validate, p.timeout_s, p.max_retries) == ("both", None, 0)
    assert (p.backoff_base, p.backoff_mult, p.max_backoff) == (0.5, 2.0, None)
    assert dataclasses.is_dataclass(p)
    assert not hasattr(p, "__dict__")
    assert penguiflow.NodePolicy is NodePolicy


@pytest.mark.parametrize("mode", ["both", "in", "out", "none"])
def test_policy_accepts_each_validate_mode(mode: str) -> None:
    assert NodePolicy(validate=mode).validate == mode


@pytest.mark.parametrize("mode", ["BOTH", "", "input", "all"])
def test_policy_rejects_other_validate_modes_with_exact_text(mode: str) -> None:
    with pytest.raises(ValueError) as info:
        NodePolicy(validate=mode)
    assert str(info.value) == "validate must be one of 'both', 'in', 'out', 'none'"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout_s", -1.0),
        ("timeout_s", 0),
        ("timeout_s", 0.0),
        ("max_retries", -1),
        ("backoff_base", -0.1),
        ("backoff_mult", -2.0),
        ("max_backoff", -1.0),
    ],
)
def test_policy_rejects_negative_numbers_naming_the_field(field: str, value: float) -> None:
    """Our extension: bad numeric settings fail at construction, naming the field."""
    with pytest.raises(ValueError, match=field):
        NodePolicy(**{field: value})


def test_policy_accepts_zero_backoff_and_positive_values() -> None:
    p = NodePolicy(timeout_s=0.01, max_retries=3, backoff_base=0.0, backoff_mult=1.0)
    assert (p.timeout_s, p.max_retries, p.backoff_base) == (0.01, 3, 0.0)
    assert NodePolicy(max_backoff=1.5).max_backoff == 1.5


# --------------------------------------------------------------------------- construction


def test_node_defaults() -> None:
    n = Node(fn)
    assert n.func is fn
    assert n.name == "fn"
    assert n.policy == NodePolicy()
    assert n.allow_cycle is False
    assert isinstance(n.node_id, str)
    assert len(n.node_id) == 32
    int(n.node_id, 16)
    assert dataclasses.is_dataclass(n)
    assert not hasattr(n, "__dict__")
    assert penguiflow.Node is Node


def test_each_node_gets_its_own_policy_and_id() -> None:
    a, b = Node(fn), Node(fn)
    assert a.policy is not b.policy
    assert a.node_id != b.node_id


def test_node_id_is_not_an_init_argument() -> None:
    with pytest.raises(TypeError):
        Node(fn, node_id="x")  # type: ignore[call-arg]


def test_explicit_name_policy_and_cycle_flag() -> None:
    pol = NodePolicy(validate="none")
    n = Node(fn, name="custom", policy=pol, allow_cycle=True)
    assert (n.name, n.policy, n.allow_cycle) == ("custom", pol, True)


def test_sync_function_is_rejected() -> None:
    def sync(message: Any, ctx: Any) -> Any:
        return message

    with pytest.raises(TypeError) as info:
        Node(sync)  # type: ignore[arg-type]
    assert str(info.value) == "Node function must be declared with async def"


def test_async_generator_and_lambda_are_rejected() -> None:
    async def agen(message: Any, ctx: Any) -> Any:
        yield message

    for bad in (agen, lambda m, c: m):
        with pytest.raises(TypeError, match=r"^Node function must be declared with async def$"):
            Node(bad)  # type: ignore[arg-type]


def test_async_check_runs_before_arity_check() -> None:
    def sync_one(message: Any) -> Any:
        return message

    with pytest.raises(TypeError):
        Node(sync_one)  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [0, 1, 3])
def test_wrong_arity_is_rejected_with_name_and_count(count: int) -> None:
    params = ", ".join(f"p{i}" for i in range(count))
    namespace: dict[str, Any] = {}
    exec(f"async def worker({params}):\n    return None", namespace)
    with pytest.raises(ValueError) as info:
        Node(namespace["worker"])
    assert str(info.value) == (
        f"Node 'worker' must accept exactly two parameters (message, ctx); got {count}"
    )


def test_arity_message_uses_the_explicit_name() -> None:
    async def one(message: Any) -> Any:
        return message

    with pytest.raises(ValueError) as info:
        Node(one, name="renamed")  # type: ignore[arg-type]
    assert str(info.value) == (
        "Node 'renamed' must accept exactly two parameters (message, ctx); got 1"
    )


def test_star_args_counts_as_one_parameter() -> None:
    async def star(*args: Any) -> Any:
        return None

    with pytest.raises(ValueError, match=r"got 1$"):
        Node(star)


def test_keyword_only_context_is_rejected() -> None:
    async def kw(message: Any, *, ctx: Any) -> Any:
        return message

    with pytest.raises(ValueError) as info:
        Node(kw)  # type: ignore[arg-type]
    assert str(info.value) == "Context parameter must be positional"


def test_var_positional_context_is_rejected() -> None:
    async def var(message: Any, *ctx: Any) -> Any:
        return message

    with pytest.raises(ValueError, match=r"^Context parameter must be positional$"):
        Node(var)


def test_positional_only_parameters_are_accepted() -> None:
    async def pos(message: Any, ctx: Any, /) -> Any:
        return message

    assert Node(pos).name == "pos"


# --------------------------------------------------------------------------- identity


def test_hash_equality_and_dict_keys() -> None:
    a, b = Node(fn, name="x"), Node(fn, name="x")
    assert hash(a) == hash(a.node_id)
    assert a == a
    assert a != b
    table = {a: 1, b: 2}
    assert table[a] == 1
    assert table[b] == 2


def test_to_returns_self_and_the_successors() -> None:
    a, b, c = Node(fn, name="a"), Node(fn, name="b"), Node(fn, name="c")
    adjacency = a.to(b, c)
    assert adjacency[0] is a
    assert tuple(adjacency[1]) == (b, c)
    empty = a.to()
    assert empty[0] is a
    assert tuple(empty[1]) == ()


# --------------------------------------------------------------------------- invoke


def _registry(name: str = "n") -> ModelRegistry:
    reg = ModelRegistry()
    reg.register(name, In, Out)
    return reg


def _recording_node(result: Any, validate: str, seen: list[Any]) -> Node:
    async def body(message: Any, ctx: Any) -> Any:
        seen.append((message, ctx))
        return result

    return Node(body, name="n", policy=NodePolicy(validate=validate))


async def test_invoke_without_registry_passes_values_through() -> None:
    seen: list[Any] = []
    ctx = object()
    n = _recording_node({"y": "not-an-int"}, "both", seen)
    assert await n.invoke({"x": "raw"}, ctx, registry=None) == {"y": "not-an-int"}
    assert seen == [({"x": "raw"}, ctx)]


async def test_invoke_unregistered_node_raises_key_error() -> None:
    n = _recording_node(None, "both", [])
    with pytest.raises(KeyError):
        await n.invoke({"x": 1}, None, registry=ModelRegistry())


async def test_invoke_validate_none_skips_registry_lookup() -> None:
    seen: list[Any] = []
    n = _recording_node("anything", "none", seen)
    assert await n.invoke({"x": "raw"}, None, registry=ModelRegistry()) == "anything"
    assert seen[0][0] == {"x": "raw"}


async def test_invoke_validate_both_coerces_input_and_output() -> None:
    seen: list[Any] = []
    n = _recording_node({"y": "7"}, "both", seen)
    out = await n.invoke({"x": "3"}, None, registry=_registry())
    assert seen[0][0] == In(x=3)
    assert out == Out(y=7)


async def test_invoke_validate_in_only() -> None:
    seen: list[Any] = []
    n = _recording_node({"y": "not-an-int"}, "in", seen)
    out = await n.invoke({"x": 3}, None, registry=_registry())
    assert isinstance(seen[0][0], In)
    assert out == {"y": "not-an-int"}
    with pytest.raises(pydantic.ValidationError):
        await n.invoke({"x": "nope"}, None, registry=_registry())
    assert len(seen) == 1  # the function never ran for invalid input


async def test_invoke_validate_out_only() -> None:
    seen: list[Any] = []
    n = _recording_node({"y": 1}, "out", seen)
    out = await n.invoke({"x": "nope"}, None, registry=_registry())
    assert seen[0][0] == {"x": "nope"}
    assert out == Out(y=1)

    bad = _recording_node({"y": "nope"}, "out", [])
    with pytest.raises(ValueError):  # pydantic.ValidationError is a ValueError
        await bad.invoke({"x": 1}, None, registry=_registry())


async def test_invoke_none_result_skips_output_validation() -> None:
    n = _recording_node(None, "both", [])
    assert await n.invoke({"x": 1}, None, registry=_registry()) is None


@pytest.mark.parametrize("name", [None, ""])
def test_a_missing_or_empty_name_falls_back_to_the_function_name(name: str | None) -> None:
    """As upstream: ``name=""`` is no name, so the function's (else the node's id) is used."""

    async def with_prefix(prefix: Any, message: Any, ctx: Any) -> Any:
        return message

    assert Node(fn, name=name).name == "fn"
    nameless = Node(functools.partial(with_prefix, "p"), name=name)
    assert nameless.name == nameless.node_id
