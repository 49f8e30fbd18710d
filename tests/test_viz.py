from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow.core import OPEN_SEA, ROOKERY, create
from penguiflow.node import Node, NodePolicy
from penguiflow.viz import flow_to_dot, flow_to_mermaid


async def _body(msg: Any, ctx: Any) -> Any:
    return msg


def make_node(name: str, *, allow_cycle: bool = False) -> Node:
    return Node(_body, name=name, policy=NodePolicy(validate="none"), allow_cycle=allow_cycle)


@dataclass
class FakeFloe:
    source: Any
    target: Any


@dataclass
class FakeFlow:
    _floes: list[FakeFloe]


def test_spec_example_controller_loop() -> None:
    c = make_node("c", allow_cycle=True)
    w = make_node("w")
    flow = create(c.to(c, w), w.to())
    mermaid = flow_to_mermaid(flow)
    lines = mermaid.split("\n")
    assert lines[0] == "graph TD"
    assert not mermaid.endswith("\n")
    assert "    c -->|loop| c" in lines
    assert "    OpenSea -->|ingress| c" in lines
    assert "    w -->|egress| Rookery" in lines
    assert "    c --> w" in lines
    assert "    classDef controller_loop fill:#fef3c7,stroke:#b45309,stroke-width:1px" in lines
    assert "    classDef endpoint fill:#e0f2fe,stroke:#0369a1,stroke-width:1px" in lines
    assert "    class c controller_loop" in lines
    assert "    class OpenSea endpoint" in lines
    assert "    class Rookery endpoint" in lines
    assert "    class w controller_loop" not in lines
    assert '    c["c"]' in lines
    assert '    OpenSea["OpenSea"]' in lines

    dot = flow_to_dot(flow)
    assert 'label="loop"' in dot
    assert 'label="ingress"' in dot
    assert 'label="egress"' in dot


def test_mermaid_section_order_and_direction() -> None:
    a, b = make_node("a"), make_node("b")
    flow = create(a.to(b), b.to())
    lines = flow_to_mermaid(flow, direction="LR").split("\n")
    assert lines[0] == "graph LR"
    node_lines = [i for i, line in enumerate(lines) if line.endswith('"]')]
    classdef_lines = [i for i, line in enumerate(lines) if "classDef" in line]
    class_lines = [i for i, line in enumerate(lines) if line.startswith("    class ")]
    edge_lines = [i for i, line in enumerate(lines) if "-->" in line]
    assert len(node_lines) == 4
    assert classdef_lines == [max(node_lines) + 1]  # only "endpoint" is in use
    assert max(classdef_lines) < min(class_lines)
    assert max(class_lines) < min(edge_lines)
    assert sorted(lines[i] for i in edge_lines) == sorted(
        ["    OpenSea -->|ingress| a", "    a --> b", "    b -->|egress| Rookery"]
    )
    assert not any("controller_loop" in line for line in lines)


def test_classdefs_are_sorted_when_both_in_use() -> None:
    loop = make_node("loop", allow_cycle=True)
    lines = flow_to_mermaid(create(loop.to(loop))).split("\n")
    defs = [line for line in lines if "classDef" in line]
    assert [d.split()[1] for d in defs] == ["controller_loop", "endpoint"]


def test_self_edge_without_allow_cycle_is_controller_loop() -> None:
    # A fake flow: real flows reject this cycle without allow_cycles.
    n = make_node("n")
    flow = FakeFlow([FakeFloe(n, n), FakeFloe(OPEN_SEA, n)])
    lines = flow_to_mermaid(flow).split("\n")  # type: ignore[arg-type]
    assert "    class n controller_loop" in lines
    assert "    n -->|loop| n" in lines
    dot = flow_to_dot(flow)  # type: ignore[arg-type]
    assert '    n [label="n", style="rounded,filled", fillcolor="#fef3c7"]' in dot.split("\n")


def test_identifiers_are_sanitised_and_deduplicated() -> None:
    first, second, third = make_node("my-node"), make_node("my node"), make_node("my_node")
    empty = make_node("x")
    empty.name = ""
    flow = FakeFlow([FakeFloe(first, second), FakeFloe(second, third), FakeFloe(third, empty)])
    lines = flow_to_mermaid(flow).split("\n")  # type: ignore[arg-type]
    assert '    my_node["my-node"]' in lines
    assert '    my_node_2["my node"]' in lines
    assert '    my_node_3["my_node"]' in lines
    assert "    my_node --> my_node_2" in lines
    assert "    my_node_2 --> my_node_3" in lines
    # An empty name falls back to the node id, which is hex and therefore safe.
    assert f'    {empty.node_id}["{empty.node_id}"]' in lines


def test_label_that_sanitises_to_empty_becomes_node() -> None:
    weird = make_node("x")
    weird.name = "+++"
    other = make_node("x")
    other.name = "!"
    flow = FakeFlow([FakeFloe(weird, other)])
    lines = flow_to_mermaid(flow).split("\n")  # type: ignore[arg-type]
    assert '    ___["+++"]' in lines
    assert '    _["!"]' in lines
    blank = make_node("x")
    blank.name = None
    blank.node_id = ""
    assert '    node[""]' in flow_to_mermaid(FakeFlow([FakeFloe(blank, weird)])).split("\n")  # type: ignore[arg-type]


def test_quotes_are_escaped_in_labels() -> None:
    quoted = make_node('say "hi"')
    flow = FakeFlow([FakeFloe(OPEN_SEA, quoted)])
    assert '    say__hi_["say \\"hi\\""]' in flow_to_mermaid(flow).split("\n")  # type: ignore[arg-type]
    assert '    say__hi_ [label="say \\"hi\\""]' in flow_to_dot(flow).split("\n")  # type: ignore[arg-type]


def test_dot_full_output() -> None:
    a, b = make_node("a"), make_node("b")
    flow = FakeFlow([FakeFloe(OPEN_SEA, a), FakeFloe(a, b), FakeFloe(b, ROOKERY)])
    assert flow_to_dot(flow, rankdir="LR") == "\n".join(  # type: ignore[arg-type]
        [
            "digraph PenguiFlow {",
            "    rankdir=LR",
            "    node [shape=box, style=rounded]",
            '    OpenSea [label="OpenSea", shape=oval, style="filled", fillcolor="#e0f2fe"]',
            '    a [label="a"]',
            '    b [label="b"]',
            '    Rookery [label="Rookery", shape=oval, style="filled", fillcolor="#e0f2fe"]',
            '    OpenSea -> a [label="ingress"]',
            "    a -> b",
            '    b -> Rookery [label="egress"]',
            "}",
        ]
    )


def test_mermaid_full_output() -> None:
    c = make_node("c", allow_cycle=True)
    flow = FakeFlow([FakeFloe(OPEN_SEA, c), FakeFloe(c, c), FakeFloe(c, ROOKERY)])
    assert flow_to_mermaid(flow) == "\n".join(  # type: ignore[arg-type]
        [
            "graph TD",
            '    OpenSea["OpenSea"]',
            '    c["c"]',
            '    Rookery["Rookery"]',
            "    classDef controller_loop fill:#fef3c7,stroke:#b45309,stroke-width:1px",
            "    classDef endpoint fill:#e0f2fe,stroke:#0369a1,stroke-width:1px",
            "    class OpenSea endpoint",
            "    class c controller_loop",
            "    class Rookery endpoint",
            "    OpenSea -->|ingress| c",
            "    c -->|loop| c",
            "    c -->|egress| Rookery",
        ]
    )


def test_dot_default_rankdir_and_controller_style_on_real_flow() -> None:
    c = make_node("c", allow_cycle=True)
    dot = flow_to_dot(create(c.to(c)))
    lines = dot.split("\n")
    assert lines[:3] == [
        "digraph PenguiFlow {",
        "    rankdir=TB",
        "    node [shape=box, style=rounded]",
    ]
    assert lines[-1] == "}"
    assert '    c [label="c", style="rounded,filled", fillcolor="#fef3c7"]' in lines
    assert '    c -> c [label="loop"]' in lines


def test_empty_flow() -> None:
    flow = create()
    assert flow_to_mermaid(flow) == "graph TD"
    assert flow_to_dot(flow) == "\n".join(
        ["digraph PenguiFlow {", "    rankdir=TB", "    node [shape=box, style=rounded]", "}"]
    )


def test_self_edge_on_real_flow_with_allow_cycles() -> None:
    n = make_node("n")
    lines = flow_to_mermaid(create(n.to(n), allow_cycles=True)).split("\n")
    assert "    class n controller_loop" in lines
    assert "    n -->|loop| n" in lines


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=6),
        min_size=1,
        max_size=8,
        unique=True,
    )
)
def test_identifiers_are_unique_and_safe(names: list[str]) -> None:
    nodes = [make_node("x") for _ in names]
    for node, name in zip(nodes, names, strict=True):
        node.name = name
    floes = [FakeFloe(OPEN_SEA, nodes[0])]
    floes += [FakeFloe(a, b) for a, b in itertools.pairwise(nodes)]
    lines = flow_to_mermaid(FakeFlow(floes)).split("\n")  # type: ignore[arg-type]
    declared = [line.strip().split("[", 1)[0] for line in lines if line.endswith('"]')]
    assert len(declared) == len(names) + 1
    assert len(set(declared)) == len(declared)
    assert all(re.fullmatch(r"[0-9A-Za-z_]+", ident) for ident in declared)
