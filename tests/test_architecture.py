"""The engine's shape, checked: no import circle, no asyncio.Queue internals, and reads of
another object's private attributes (``x._name`` or ``getattr(x, "_name")``) only where the
list below says why.

Imports are read from the source (``TYPE_CHECKING`` blocks and imports inside functions
included), so a circle cannot hide behind a lazy or type-only import.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "penguiflow"

_CONTEXT = "Context is the engine's own class; the engine reads its floes directly"
_CONTRACT = "a private attribute the contract fixes (spec 7.17)"

#: Every read of a private attribute of another object (not ``self``/``cls``) in the package,
#: by module and attribute, with the reason it is there.
ALLOWED_PRIVATE_READS: dict[tuple[str, str], str] = {
    ("_runtime/events.py", "_in_deques"): _CONTEXT + " (depths, per event)",
    ("_runtime/events.py", "_out_deques"): _CONTEXT + " (depths, per event)",
    ("_runtime/flow.py", "_all_in"): _CONTEXT + " (the flow wires its contexts)",
    ("_runtime/flow.py", "_all_out"): _CONTEXT + " (the flow wires its contexts)",
    ("_runtime/flow.py", "_outgoing"): _CONTEXT + " (the flow wires its contexts)",
    ("_runtime/flow.py", "_resolve"): _CONTEXT + " (emit's `to`, resolved as the context does)",
    ("_runtime/flow.py", "_bind"): _CONTEXT + " (the flow gives each context its enqueuer)",
    ("_runtime/flow.py", "_buffer"): _CONTEXT + " (the Rookery buffer: a floe of the flow)",
    ("_runtime/flow.py", "_stream_seqs"): _CONTEXT + " (stop() forgets stream counters)",
    ("_runtime/worker.py", "_all_in"): _CONTEXT + " (the loop's floes, once per run)",
    ("_runtime/worker.py", "_all_out"): _CONTEXT + " (the loop's floes, once per run)",
    ("_runtime/worker.py", "_next"): _CONTEXT + " (the loop's take)",
    ("_runtime/routing.py", "_outgoing"): _CONTEXT + " (spec 7.8: the node's Rookery floe)",
    ("_runtime/subflow.py", "_running"): _CONTRACT + " (spec 7.15)",
    ("_runtime/subflow.py", "_trace_events"): _CONTRACT + " (spec 7.15)",
    ("_runtime/subflow.py", "_spawn"): "Runtime protocol: the parent flow owns the watcher",
    ("observe/_health_collector.py", "_tasks"): _CONTRACT,
    ("observe/_server.py", "_listen"): "the server's own factory, in its module",
    ("patterns.py", "_outgoing"): _CONTRACT + " (read by patterns)",
    ("patterns.py", "_traces"): "join_k ties a bucket's life to its trace's (by getattr)",
    ("_runtime/events.py", "_cache"): "logging's per-level cache, read with a fallback",
    ("testkit.py", "_middlewares"): _CONTRACT + " (testkit appends its recorder)",
    ("testkit.py", "_next_attempt"): "the testkit's own helper class, in its module",
    ("viz.py", "_floes"): _CONTRACT + " (read by viz)",
    ("distributed/_keys.py", "_floes"): _CONTRACT + " (each floe becomes a Redis stream)",
    ("distributed/worker.py", "_middlewares"): _CONTRACT + " (workers deliver events to them)",
    ("distributed/worker.py", "_state_store"): "workers save the flow's events to its store",
    ("cli/_ends.py", "_traces"): "run and recover hear traces end, as join_k does",
    ("cli/_input.py", "_floes"): _CONTRACT + " (run finds the flow's entry nodes, as viz does)",
    ("cli/_run.py", "_with_state_store"): "run --store and recover rebuild the flow on a store",
    ("cli/_stores.py", "_replace"): "namedtuple's public method (urlsplit's result)",
    ("cli/_serve.py", "_replace"): "namedtuple's public method (the loaded Target)",
    ("cli/_serve.py", "_state_store"): "serve --store journals only a flow built without a store",
}

_QUEUE_INTERNALS = {"_queue", "_getters", "_putters", "_maxsize", "_unfinished_tasks"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = f"{target}.{alias.name}" if target else alias.name
                if candidate in modules:
                    found.add(candidate)
                elif target in modules:
                    found.add(target)
    found.discard(name)
    return found


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return circles


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_in_the_package() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _circles(graph) == []


def _read_name(node: ast.AST) -> str | None:
    """The attribute an ``x.name`` or ``getattr(x, "name", ...)`` reads, else None."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    ):
        return node.args[1].value
    return None


def _private_reads() -> dict[tuple[str, str], list[int]]:
    reads: dict[tuple[str, str], list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            attr = _read_name(node)
            if attr is None:
                continue
            if not attr.startswith("_") or attr.startswith("__"):
                continue
            target = node.value if isinstance(node, ast.Attribute) else node.args[0]
            if isinstance(target, ast.Name) and target.id in ("self", "cls"):
                continue
            reads.setdefault((module, attr), []).append(node.lineno)
    return reads


def test_private_reads_across_objects_are_the_listed_ones() -> None:
    reads = _private_reads()
    unlisted = {key: lines for key, lines in reads.items() if key not in ALLOWED_PRIVATE_READS}
    stale = sorted(set(ALLOWED_PRIVATE_READS) - set(reads))
    assert not unlisted, f"private reads with no reason given: {unlisted}"
    assert not stale, f"listed reads that no longer happen: {stale}"


def test_nothing_reads_asyncio_queue_internals() -> None:
    reads = _private_reads()
    used = {key: lines for key, lines in reads.items() if key[1] in _QUEUE_INTERNALS}
    assert not used
