"""The shape of the code, measured from its imports and definitions (standard library only).

    python3 .ci/structure.py            # the report; exit status 1 when a rule is broken
    python3 .ci/structure.py --graph    # also every import edge between project modules

Rules (DESIGN.md, ARCHITECTURE.md):
- no import cycle between the project's modules (imports inside functions and under
  ``TYPE_CHECKING`` count: a cycle hidden behind them is still a cycle);
- ``trainer`` imports neither ``hpsearch`` nor ``reports``;
- ``reports`` imports ``hpsearch.trials`` alone of ``hpsearch``;
- ``hpsearch`` imports ``reports`` only in the modules that make reports (ALLOWED_REPORTS);
- ``hpsearch.trials`` imports nothing of the project (a leaf);
- between the parts of hpsearch (LAYERS, from the top down) imports only point down;
- no function or method longer than MAX_FUNCTION_LINES lines.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hpsearch", "trainer", "reports")
MAX_FUNCTION_LINES = 60
#: The parts of hpsearch from the top down; an import may only point down this list.
LAYERS = (
    "hpsearch.cli",
    "hpsearch.commands",
    "hpsearch.export",
    "hpsearch.run",
    "hpsearch.dashboard",
    "hpsearch.study",
    "hpsearch.storage",
    "hpsearch.paths",
    "hpsearch.trainer_api",
    "hpsearch.trials",
    "hpsearch",  # the package itself: its version, nothing else
)
#: The modules of hpsearch that make reports (``hpsearch report``, ``hpsearch best --export``).
ALLOWED_REPORTS = ("hpsearch.commands.report", "hpsearch.commands.best", "hpsearch.export")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(p): p
        for pkg in PACKAGES
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to (a module, or a package's ``__init__``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports (``from pkg import submodule`` counts as the
    submodule, ``from pkg import name`` as the package's ``__init__``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = parts[: len(parts) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        for name in names:
            target = resolve(name, modules)
            if target is not None and target != module:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def long_functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                out.append((f"{node.name} (line {node.lineno})", lines))
    return out


def rule_broken(module: str, target: str) -> str | None:
    """Which layering rule the import ``module -> target`` breaks, or None."""
    top, other = module.split(".")[0], target.split(".")[0]
    if top == "trainer" and other != "trainer":
        return "trainer imports neither hpsearch nor reports"
    if top == "reports" and other == "hpsearch" and not target.startswith("hpsearch.trials"):
        return "reports imports hpsearch.trials alone of hpsearch"
    if top == "hpsearch" and other == "reports" and not module.startswith(ALLOWED_REPORTS):
        return "only the report-making modules of hpsearch import reports"
    if module.startswith("hpsearch.trials") and not target.startswith("hpsearch.trials"):
        return "hpsearch.trials is a leaf"
    here, there = layer(module), layer(target)
    if here is not None and there is not None and there < here:
        return f"{LAYERS[here]} may not import {LAYERS[there]}, which is above it"
    if top == "hpsearch" and other == "hpsearch" and (here is None or there is None):
        return "every module of hpsearch belongs to one of LAYERS"
    return None


def layer(module: str) -> int | None:
    """The index in LAYERS of the part ``module`` belongs to (None: not hpsearch, or
    the package's own ``__init__``)."""
    for i, part in enumerate(LAYERS):
        if module == part or (part != "hpsearch" and module.startswith(part + ".")):
            return i
    return None


def broken_rules(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} imports {target}: {why}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if (why := rule_broken(module, target)) is not None
    ]


def main(argv: list[str]) -> int:
    modules = project_modules()
    graph = {m: imports_of(m, p, modules) for m, p in modules.items()}
    print("lines and modules per package (non-blank lines of .py files):")
    for pkg in PACKAGES:
        files = [p for m, p in modules.items() if m.split(".")[0] == pkg]
        lines = sum(
            sum(1 for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
            for p in files
        )
        print(f"  {pkg:<10} {len(files):>3} modules {lines:>6} lines")
    if "--graph" in argv:
        print("imports between project modules:")
        for module, targets in sorted(graph.items()):
            for target in sorted(targets):
                print(f"  {module} -> {target}")
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    problems += broken_rules(graph)
    for module, path in sorted(modules.items()):
        problems += [
            f"{module}.{name}: {n} lines (more than {MAX_FUNCTION_LINES})"
            for name, n in long_functions(path)
        ]
    edges = sum(len(t) for t in graph.values())
    print(f"{len(modules)} modules, {edges} import edges, {len(cycles(graph))} cycle(s)")
    for problem in problems:
        print(f"BROKEN: {problem}")
    print("structure: ok" if not problems else f"structure: {len(problems)} rule(s) broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
