from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import pytest

import penguiflow.policies as policies
from penguiflow.node import Node
from penguiflow.policies import (
    DictRoutingPolicy,
    PolicyLike,
    RoutingDecisionType,
    RoutingPolicy,
    RoutingRequest,
    evaluate_policy,
)

if TYPE_CHECKING:
    from pathlib import Path


async def _fn(message: Any, ctx: Any) -> Any:
    return message


def make_node(name: str | None) -> Node:
    node = Node(_fn, name="placeholder")
    node.name = name
    return node


def make_request(
    *, trace_id: str | None = "t1", message: Any = "msg", proposed: tuple[Node, ...] = ()
) -> RoutingRequest:
    router = make_node("router")
    # Any object may stand in for the context: policies only read it.
    return RoutingRequest(
        message=message,
        context=object(),  # type: ignore[arg-type]
        node=router,
        proposed=proposed,
        trace_id=trace_id,
    )


def test_public_names() -> None:
    for name in (
        "RoutingRequest",
        "RoutingPolicy",
        "DictRoutingPolicy",
        "evaluate_policy",
        "RoutingDecisionType",
        "PolicyCallable",
        "PolicyLike",
    ):
        assert hasattr(policies, name)


def test_routing_request_is_slotted_with_spec_fields() -> None:
    names = [f.name for f in dataclasses.fields(RoutingRequest)]
    assert names == ["message", "context", "node", "proposed", "trace_id"]
    assert not hasattr(make_request(), "__dict__")


def test_node_name_and_proposed_names_fall_back_to_node_id() -> None:
    a, unnamed = make_node("a"), make_node(None)
    request = RoutingRequest(
        message=None,
        context=object(),  # type: ignore[arg-type]
        node=unnamed,
        proposed=(a, unnamed),
        trace_id=None,
    )
    assert request.node_name == unnamed.node_id
    assert request.proposed_names == ("a", unnamed.node_id)
    assert make_request().node_name == "router"


async def test_evaluate_policy_uses_select_when_present() -> None:
    class Selecting:
        def __call__(self, request: RoutingRequest) -> RoutingDecisionType:
            return "called"

        def select(self, request: RoutingRequest) -> RoutingDecisionType:
            return "selected"

    assert await evaluate_policy(Selecting(), make_request()) == "selected"


async def test_evaluate_policy_calls_plain_callables_and_awaits() -> None:
    def sync_policy(request: RoutingRequest) -> RoutingDecisionType:
        return [request.trace_id or ""]

    async def async_policy(request: RoutingRequest) -> RoutingDecisionType:
        return "async"

    class AsyncSelect:
        async def select(self, request: RoutingRequest) -> RoutingDecisionType:
            return None

    assert await evaluate_policy(sync_policy, make_request()) == ["t1"]
    assert await evaluate_policy(async_policy, make_request()) == "async"
    assert await evaluate_policy(AsyncSelect(), make_request()) is None


async def test_evaluate_policy_propagates_policy_errors() -> None:
    def broken(request: RoutingRequest) -> RoutingDecisionType:
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        await evaluate_policy(broken, make_request())


def test_dict_policy_satisfies_the_protocol_type() -> None:
    policy: RoutingPolicy = DictRoutingPolicy({})
    like: PolicyLike = policy
    assert like is policy


async def test_dict_policy_select_by_trace_id_with_default() -> None:
    policy = DictRoutingPolicy({"t1": ["router"], "t2": "left"}, default="fallback")
    assert await evaluate_policy(policy, make_request(trace_id="t1")) == ["router"]
    assert policy.select(make_request(trace_id="t2")) == "left"
    assert policy.select(make_request(trace_id="unknown")) == "fallback"
    assert policy.select(make_request(trace_id=None)) == "fallback"
    assert DictRoutingPolicy({}).select(make_request()) is None


def test_dict_policy_returns_values_unchanged() -> None:
    target = make_node("x")
    value = [target, "y"]
    policy = DictRoutingPolicy({"t1": value})
    assert policy.select(make_request()) is value


def test_dict_policy_custom_key_getter_none_key_gives_default() -> None:
    policy = DictRoutingPolicy(
        {"hello": "h"},
        default="d",
        key_getter=lambda request: request.message if request.message != "skip" else None,
    )
    assert policy.select(make_request(message="hello")) == "h"
    assert policy.select(make_request(message="skip")) == "d"


def test_update_mapping_copies_and_set_default() -> None:
    policy = DictRoutingPolicy({"t1": "a"})
    new_mapping: dict[str, RoutingDecisionType] = {"t1": "b"}
    policy.update_mapping(new_mapping)
    new_mapping["t1"] = "mutated"
    assert policy.select(make_request()) == "b"
    policy.set_default("dflt")
    assert policy.select(make_request(trace_id="zzz")) == "dflt"


def test_from_json() -> None:
    policy = DictRoutingPolicy.from_json('{"t1": ["a", "b"]}', default="d")
    assert policy.select(make_request()) == ["a", "b"]
    assert policy.select(make_request(trace_id="x")) == "d"
    keyed = DictRoutingPolicy.from_json(b'{"m": "z"}', key_getter=lambda r: r.message)
    assert keyed.select(make_request(message="m")) == "z"


@pytest.mark.parametrize("payload", ["[1, 2]", '"text"', "3"])
def test_from_json_rejects_non_mapping(payload: str) -> None:
    with pytest.raises(TypeError) as excinfo:
        DictRoutingPolicy.from_json(payload)
    assert str(excinfo.value) == "JSON payload must decode to a mapping"


def test_from_json_file_reads_utf8(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_bytes(json.dumps({"t1": "café"}, ensure_ascii=False).encode("utf-8"))
    policy = DictRoutingPolicy.from_json_file(path, default="d")
    assert policy.select(make_request()) == "café"
    assert policy.select(make_request(trace_id=None)) == "d"
    assert DictRoutingPolicy.from_json_file(str(path)).select(make_request()) == "café"


def test_from_json_file_rejects_non_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(TypeError, match="JSON payload must decode to a mapping"):
        DictRoutingPolicy.from_json_file(path)


def test_from_env_default_json_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_POLICY", '{"t1": "envval"}')
    policy = DictRoutingPolicy.from_env("PF_POLICY", default="d")
    assert policy.select(make_request()) == "envval"
    assert policy.select(make_request(trace_id="other")) == "d"


def test_from_env_custom_loader_and_key_getter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_POLICY", "a=1;b=2")

    def loader(raw: str) -> dict[str, str]:
        return dict(pair.split("=") for pair in raw.split(";"))

    policy = DictRoutingPolicy.from_env("PF_POLICY", loader=loader, key_getter=lambda r: r.message)
    assert policy.select(make_request(message="b")) == "2"


def test_from_env_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PF_MISSING", raising=False)
    with pytest.raises(KeyError) as excinfo:
        DictRoutingPolicy.from_env("PF_MISSING")
    assert excinfo.value.args == ("Environment variable 'PF_MISSING' not set",)


def test_from_env_loader_must_return_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_POLICY", "[1]")
    with pytest.raises(TypeError) as excinfo:
        DictRoutingPolicy.from_env("PF_POLICY")
    assert str(excinfo.value) == "Policy loader must return a mapping"
    with pytest.raises(TypeError, match="Policy loader must return a mapping"):
        DictRoutingPolicy.from_env("PF_POLICY", loader=lambda raw: raw)


def test_constructors_are_classmethods() -> None:
    for name in ("from_json", "from_json_file", "from_env"):
        assert isinstance(DictRoutingPolicy.__dict__[name], classmethod)


def test_set_default_takes_the_decision_by_upstream_keyword() -> None:
    policy = DictRoutingPolicy({"t1": "a"}, default="old")
    policy.set_default(decision=["x", "y"])
    assert policy.select(make_request(trace_id="zzz")) == ["x", "y"]
    policy.set_default(decision=None)
    assert policy.select(make_request(trace_id="zzz")) is None


def test_set_default_keeps_positional_and_default_keyword_callers() -> None:
    policy = DictRoutingPolicy({"t1": "a"})
    policy.set_default("positional")
    assert policy.select(make_request(trace_id="zzz")) == "positional"
    policy.set_default(default="by-old-name")
    assert policy.select(make_request(trace_id="zzz")) == "by-old-name"
    policy.set_default(None)
    assert policy.select(make_request(trace_id="zzz")) is None


def test_set_default_needs_exactly_one_decision() -> None:
    policy = DictRoutingPolicy({}, default="kept")
    with pytest.raises(TypeError, match="missing 1 required argument: 'decision'"):
        policy.set_default()
    with pytest.raises(TypeError, match="'decision' or 'default', not both"):
        policy.set_default("a", default="b")
    assert policy.select(make_request(trace_id="zzz")) == "kept"
