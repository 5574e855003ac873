"""The parts of the project and the imports between them, read from the code (docs/architecture.md).

    python tools/architecture.py            # the Mermaid graph of docs/architecture.md
    python tools/architecture.py --edges    # every import between two parts, with the module that makes it

A part is a folder or a set of modules (:data:`PARTS`); an arrow A --> B means some module of A imports one of B,
at the top of a file or inside a function. :data:`ALLOWED` is what each part may import; ``tests/test_architecture.py``
checks the code against it, that no two files import each other (directly or round a loop), and that the
picture in docs/architecture.md is the code's.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL_FILES = ("anchors", "motion", "generator", "layers", "geometry", "model", "config", "checkpoint", "__init__")
# (part, files or folders relative to the root), in the order of the picture: a file is matched before a folder.
PARTS: dict[str, tuple[str, ...]] = {
    "app": ("app.py", "internet/app"),
    "cli": ("internet/animate.py",),
    "pipeline": ("internet/pipeline",),
    "sources": ("internet/sources",),
    "video": ("internet/video",),
    "speedups": ("internet/speedups",),
    "model": tuple(f"internet/{name}.py" for name in MODEL_FILES),
    "shared": ("internet/errors.py", "internet/skeleton.py"),
    "training": ("training",),
    "benchmarks": ("benchmarks",),
    "tools": ("tools",),
}
# What each part may import (besides itself). The product (app, cli, pipeline and below) never imports
# training, benchmarks or tools.
ALLOWED: dict[str, set[str]] = {
    "shared": set(),
    "model": {"shared"},
    "speedups": {"model"},
    "video": {"shared", "sources"},
    "sources": {"shared", "model"},
    "pipeline": {"shared", "sources", "video", "speedups", "model"},
    "cli": {"shared", "pipeline", "sources", "speedups"},
    "app": {"shared", "pipeline", "sources", "video", "speedups", "model"},
    "training": {"shared", "model", "speedups", "video"},
    "benchmarks": {"shared", "model", "speedups", "pipeline", "sources", "video", "training"},
    "tools": set(PARTS) - {"tools"},
}


def part_of(path: Path) -> str | None:
    """The part a file belongs to (``None``: tests and anything outside the parts)."""
    rel = path.relative_to(ROOT).as_posix()
    for name, members in PARTS.items():
        if any(rel == m or rel.startswith(m.rstrip("/") + "/") for m in members if m.endswith(".py")):
            return name
    for name, members in PARTS.items():
        if any(rel.startswith(m + "/") for m in members if not m.endswith(".py")):
            return name
    return None


def module_path(module: str) -> Path | None:
    """The file of a project module (``internet.video.io`` -> internet/video/io.py), or None if not ours."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (``from a.b import c`` counts a.b and a.b.c)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def edges() -> dict[tuple[str, str], set[str]]:
    """(importing part, imported part) -> the importing files."""
    result: dict[tuple[str, str], set[str]] = {}
    for path in sorted(ROOT.glob("**/*.py")):
        if ".venv" in path.parts or "tests" in path.relative_to(ROOT).parts[:1]:
            continue
        source = part_of(path)
        if source is None:
            continue
        for module in imported_modules(path):
            target_path = module_path(module)
            target = None if target_path is None else part_of(target_path)
            if target is not None and target != source:
                result.setdefault((source, target), set()).add(path.relative_to(ROOT).as_posix())
    return result


def module_graph() -> dict[str, set[str]]:
    """Project file -> the project files it imports. An import of a package's ``__init__`` from inside that
    package is left out: Python loads the package first, so it cannot close a cycle that matters."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.glob("**/*.py")):
        rel = path.relative_to(ROOT)
        if ".venv" in path.parts or part_of(path) is None:
            continue
        targets = set()
        for module in imported_modules(path):
            target = module_path(module)
            if target is None or target == path:
                continue
            if target.name == "__init__.py" and path.is_relative_to(target.parent):
                continue
            targets.add(target.relative_to(ROOT).as_posix())
        graph[rel.as_posix()] = targets
    return graph


def cycles(graph: dict[str, set[str]] | None = None) -> list[list[str]]:
    """The import cycles of ``graph`` (default: :func:`module_graph`), each as the files around it."""
    graph = module_graph() if graph is None else graph
    found: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def forbidden() -> list[str]:
    """The imports that break :data:`ALLOWED`, one line each."""
    return [f"{a} -> {b}: {', '.join(sorted(files))}" for (a, b), files in sorted(edges().items())
            if b not in ALLOWED[a]]  # fmt: skip


PRODUCT = ("app", "cli", "pipeline", "sources", "video", "speedups", "model", "shared")


def mermaid() -> str:
    """The part graph as a Mermaid flowchart (what docs/architecture.md shows). Every part may use ``shared``
    (errors, the joint order), so those arrows are left out; so is ``tools``, which may use anything."""
    lines = ["```mermaid", "flowchart TD", "    subgraph product [the product: app.py and internet/]"]
    lines += [f"        {name}" for name in PRODUCT]
    lines += ["    end"]
    lines += [f"    {a} --> {b}" for a, b in sorted(edges()) if b != "shared" and a != "tools"]
    return "\n".join(lines + ["```"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", action="store_true", help="every import between two parts, with its files")
    args = parser.parse_args(argv)
    if args.edges:
        for (a, b), files in sorted(edges().items()):
            print(f"{a} -> {b}: {', '.join(sorted(files))}")
    else:
        print(mermaid())
    bad = forbidden() + [" -> ".join(cycle) for cycle in cycles()]
    for line in bad:
        print(f"not allowed: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
