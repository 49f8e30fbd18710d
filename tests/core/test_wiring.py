"""Spec sections 7.1 and 7.2: constants, small types, construction and wiring."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

import penguiflow
from penguiflow import core
from penguiflow.core import (
    BUDGET_EXCEEDED_TEXT,
    DEADLINE_EXCEEDED_TEXT,
    DEFAULT_QUEUE_MAXSIZE,
    OPEN_SEA,
    ROOKERY,
    TOKEN_BUDGET_EXCEEDED_TEXT,
    CycleError,
    Endpoint,
    Floe,
    PenguiFlow,
    TraceCancelled,
    create,
)
from penguiflow.node import Node

from .helpers import echo, node

CYCLE_TEXT = "Flow contains a cycle; enable allow_cycles to bypass"


def edges(flow: PenguiFlow) -> list[tuple[str, str]]:
    """The flow's floes as (source name, target name) pairs, sorted."""
    return sorted((f.source.name, f.target.name) for f in flow._floes)


# --------------------------------------------------------------------------- 7.1


def test_constants() -> None:
    assert DEFAULT_QUEUE_MAXSIZE == 64
    assert BUDGET_EXCEEDED_TEXT == "Hop budget exhausted"
    assert DEADLINE_EXCEEDED_TEXT == "Deadline exceeded"
    assert TOKEN_BUDGET_EXCEEDED_TEXT == "Token budget exhausted"


def test_core_all_and_package_exports() -> None:
    assert set(core.__all__) == {
        "Context",
        "PenguiFlow",
        "CycleError",
        "call_playbook",
        "create",
        "DEFAULT_QUEUE_MAXSIZE",
        "Floe",
    }
    for name in ("Context", "PenguiFlow", "CycleError", "call_playbook", "create"):
        assert getattr(penguiflow, name) is getattr(core, name)
    assert penguiflow.DEFAULT_QUEUE_MAXSIZE == 64


def test_cycle_error_is_a_runtime_error() -> None:
    assert issubclass(CycleError, RuntimeError)


def test_endpoints() -> None:
    assert OPEN_SEA.name == "OpenSea"
    assert ROOKERY.name == "Rookery"
    assert Endpoint("OpenSea") == OPEN_SEA
    assert hash(Endpoint("Rookery")) == hash(ROOKERY)
    assert Endpoint("x") != Endpoint("y")
    assert [f.name for f in dataclasses.fields(Endpoint)] == ["name"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        OPEN_SEA.name = "other"  # type: ignore[misc]
    assert not hasattr(OPEN_SEA, "__dict__")


def test_trace_cancelled() -> None:
    exc = TraceCancelled("abc")
    assert isinstance(exc, Exception)
    assert str(exc) == "trace cancelled: abc"
    assert exc.trace_id == "abc"


def test_floe_exposes_source_target_and_bounded_queue() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    f = Floe(a, b, maxsize=3)
    assert f.source is a
    assert f.target is b
    # The floe owns its state; ``queue`` answers asyncio.Queue's calls (the contract's face).
    for call in ("put", "put_nowait", "get", "get_nowait", "qsize", "empty", "full"):
        assert callable(getattr(f.queue, call))
    assert f.queue.maxsize == 3
    for i in range(3):
        f.queue.put_nowait(i)
    with pytest.raises(asyncio.QueueFull):
        f.queue.put_nowait(3)


@pytest.mark.parametrize("maxsize", [0, -1])
def test_floe_non_positive_maxsize_is_unbounded(maxsize: int) -> None:
    f = Floe(OPEN_SEA, ROOKERY, maxsize=maxsize)
    for i in range(500):
        f.queue.put_nowait(i)
    assert f.queue.qsize() == 500


def test_floe_maxsize_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Floe(OPEN_SEA, ROOKERY, 3)  # type: ignore[misc]


# --------------------------------------------------------------------------- 7.2


def test_construction_needs_no_running_loop() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(b))
    assert flow._running is False
    assert edges(flow) == [("OpenSea", "a"), ("a", "b"), ("b", "Rookery")]


def test_create_without_arguments() -> None:
    flow = create()
    assert isinstance(flow, PenguiFlow)
    assert list(flow._floes) == []
    assert set(flow._contexts) == {OPEN_SEA, ROOKERY}


def test_create_forwards_keyword_arguments() -> None:
    a = node(echo, "a")
    flow = create(a.to(), queue_maxsize=3)
    assert {f.queue.maxsize for f in flow._floes} == {3}


def test_default_queue_maxsize_applies_to_every_floe() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(b))
    assert {f.queue.maxsize for f in flow._floes} == {64}


def test_nodes_include_successors_and_duplicate_edges_collapse() -> None:
    a, b, c = node(echo, "a"), node(echo, "b"), node(echo, "c")
    flow = PenguiFlow(a.to(b, b), a.to(b), b.to(c))
    assert edges(flow) == [("OpenSea", "a"), ("a", "b"), ("b", "c"), ("c", "Rookery")]
    assert set(flow._contexts) == {a, b, c, OPEN_SEA, ROOKERY}


def test_fan_out_and_fan_in() -> None:
    a, b, c, d = (node(echo, n) for n in "abcd")
    flow = PenguiFlow(a.to(b, c), b.to(d), c.to(d))
    assert edges(flow) == [
        ("OpenSea", "a"),
        ("a", "b"),
        ("a", "c"),
        ("b", "d"),
        ("c", "d"),
        ("d", "Rookery"),
    ]


def test_several_ingress_and_egress_nodes() -> None:
    a, b, c = (node(echo, n) for n in "abc")
    flow = PenguiFlow(a.to(c), b.to())
    assert edges(flow) == [
        ("OpenSea", "a"),
        ("OpenSea", "b"),
        ("a", "c"),
        ("b", "Rookery"),
        ("c", "Rookery"),
    ]


@pytest.mark.parametrize("via_create", [False, True])
def test_two_node_cycle_is_rejected(via_create: bool) -> None:
    a, b = node(echo, "a"), node(echo, "b")
    build: Any = create if via_create else PenguiFlow
    with pytest.raises(CycleError) as info:
        build(a.to(b), b.to(a))
    assert str(info.value) == CYCLE_TEXT


def test_longer_cycle_behind_a_root_is_rejected() -> None:
    r, a, b, c = (node(echo, n) for n in "rabc")
    with pytest.raises(CycleError, match=r"^Flow contains a cycle; enable allow_cycles to bypass$"):
        PenguiFlow(r.to(a), a.to(b), b.to(c), c.to(a))


def test_self_edge_without_allow_cycle_is_a_cycle() -> None:
    a = node(echo, "a")
    with pytest.raises(CycleError, match=r"^Flow contains a cycle"):
        PenguiFlow(a.to(a))


def test_self_edge_of_an_allow_cycle_node_is_accepted() -> None:
    c = node(echo, "c", allow_cycle=True)
    w = node(echo, "w")
    flow = PenguiFlow(c.to(c, w))
    assert edges(flow) == [("OpenSea", "c"), ("c", "c"), ("c", "w"), ("w", "Rookery")]


def test_allow_cycle_does_not_excuse_a_cycle_through_other_nodes() -> None:
    a = node(echo, "a", allow_cycle=True)
    b = node(echo, "b")
    with pytest.raises(CycleError):
        PenguiFlow(a.to(b), b.to(a))


def test_allow_cycles_skips_the_check() -> None:
    r, a, b = (node(echo, n) for n in "rab")
    flow = PenguiFlow(r.to(a), a.to(b), b.to(a), allow_cycles=True)
    # No node has an empty successor set, so there is no egress at all.
    assert edges(flow) == [("OpenSea", "r"), ("a", "b"), ("b", "a"), ("r", "a")]


def test_allow_cycle_self_loop_only_node_is_ingress_and_egress() -> None:
    c = node(echo, "c", allow_cycle=True)
    flow = PenguiFlow(c.to(c))
    assert edges(flow) == [("OpenSea", "c"), ("c", "Rookery"), ("c", "c")]


def test_quirk_plain_self_edge_counts_as_a_parent() -> None:
    """[quirk] A self-edge of a node without ``allow_cycle`` makes it its own parent."""
    n = node(echo, "n")
    w = node(echo, "w")
    flow = PenguiFlow(n.to(n, w), allow_cycles=True)
    assert edges(flow) == [("n", "n"), ("n", "w"), ("w", "Rookery")]
    solo = PenguiFlow(node(echo, "s").to(), n.to(n), allow_cycles=True)
    assert ("OpenSea", "n") not in edges(solo)
    assert ("n", "Rookery") in edges(solo)


def test_contexts_key_floes_by_peer() -> None:
    a, b, c = (node(echo, n) for n in "abc")
    flow = PenguiFlow(a.to(b, c))
    ctx_a = flow._contexts[a]
    assert set(ctx_a._outgoing) == {b, c}
    assert ctx_a.outgoing_count() == 2
    assert set(flow._contexts[OPEN_SEA]._outgoing) == {a}
    assert flow._contexts[ROOKERY].outgoing_count() == 0
    assert set(flow._contexts[b]._outgoing) == {ROOKERY}
    for key, ctx in flow._contexts.items():
        assert ctx.owner == key
        assert ctx.runtime is flow


def test_distinct_nodes_with_the_same_name_are_rejected() -> None:
    """Our decision: two different nodes may not share a name within one flow."""
    a1, a2 = node(echo, "dup"), node(echo, "dup")
    with pytest.raises(ValueError, match="dup"):
        PenguiFlow(a1.to(a2))
    x, y = Node(echo), Node(echo)  # both default to the function name
    with pytest.raises(ValueError, match="echo"):
        PenguiFlow(x.to(), y.to())


def test_the_same_node_object_may_appear_many_times() -> None:
    a, b, c = (node(echo, n) for n in "abc")
    flow = PenguiFlow(a.to(b), b.to(c), a.to(c))
    assert len({f.target for f in flow._floes if f.source is a}) == 2


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda a, b: a, id="bare-node"),
        pytest.param(lambda a, b: (a, b), id="successor-not-a-sequence"),
        pytest.param(lambda a, b: ("a", [b]), id="source-not-a-node"),
        pytest.param(lambda a, b: (a, [b, "c"]), id="successor-not-a-node"),
        pytest.param(lambda a, b: (a, "bc"), id="string-successors"),
        pytest.param(lambda a, b: (a,), id="one-element-tuple"),
        pytest.param(lambda a, b: (a, [b], [b]), id="three-element-tuple"),
    ],
)
def test_malformed_adjacency_is_a_type_error(bad: Any) -> None:
    """Our decision: an adjacency must be a ``(Node, Sequence[Node])`` tuple."""
    a, b = node(echo, "a"), node(echo, "b")
    with pytest.raises(TypeError):
        PenguiFlow(bad(a, b))
