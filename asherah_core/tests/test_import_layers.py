"""Imports among the configuration modules of asherah_core flow one way: no cycle passes through
them (the readers sit below the factory-argument assembly, compat above both)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "asherah_core"


def local_imports(path: Path) -> set[str]:
    """The asherah_core modules `path` imports (relative imports), at any depth of the file."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            for alias in node.names:
                found.add(f"{module}.{alias.name}")
    return found


def graph() -> dict[str, set[str]]:
    modules = {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p
        for p in PACKAGE.rglob("*.py")
    }
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        if name.endswith("__init__"):
            continue
        edges[name] = {m for m in local_imports(path) if m in modules and m != name}
    return edges


CONFIGURATION = {
    "asherah_core.appconfig",
    "asherah_core.pascalconfig",
    "asherah_core.factoryargs",
    "asherah_core.sqlurl",
    "asherah_core.compat",
    "asherah_core.compatenv",
    "asherah_core.compat03",
    "asherah_core.events",
    "asherah_core.metrics",
}


def test_no_import_cycle_through_the_configuration_modules() -> None:
    edges = graph()
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        for nxt in edges.get(node, ()):
            if nxt in stack:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif len(stack) < 12:
                visit(nxt, [*stack, nxt])

    for start in CONFIGURATION:
        visit(start, [start])
    assert cycles == []


def test_the_configuration_readers_sit_below_the_assembly() -> None:
    edges = graph()
    assert "asherah_core.pascalconfig" in edges["asherah_core.appconfig"]
    assert "asherah_core.appconfig" not in edges["asherah_core.pascalconfig"]
    assert edges["asherah_core.factoryargs"].isdisjoint(
        {"asherah_core.appconfig", "asherah_core.pascalconfig"}
    )
