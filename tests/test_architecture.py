"""The layout holds: every file belongs to a part, each part imports only what it may, no import cycles, and
docs/architecture.md shows the graph the code has (tools/architecture.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import architecture  # noqa: E402


def test_every_source_file_belongs_to_a_part():
    files = [p for folder in ("internet", "training", "benchmarks", "tools") for p in (ROOT / folder).glob("**/*.py")]
    assert files and [p for p in files if architecture.part_of(p) is None] == []
    assert architecture.part_of(ROOT / "app.py") == "app"
    assert architecture.part_of(ROOT / "internet" / "motion.py") == "model"  # the paper's Stage I, not a source
    assert architecture.part_of(ROOT / "internet" / "sources" / "poserig" / "rig.py") == "sources"


def test_parts_import_only_what_they_may():
    assert architecture.forbidden() == []
    product = {"app", "cli", "pipeline", "sources", "video", "speedups", "model", "shared"}
    reached = {b for (a, b) in architecture.edges() if a in product}
    assert reached <= product  # the product never imports training, benchmarks or tools


def test_no_import_cycles():
    assert architecture.cycles() == []


def test_the_cycle_finder_sees_a_cycle():
    graph = {"a.py": {"b.py"}, "b.py": {"c.py"}, "c.py": {"a.py"}, "d.py": {"a.py"}}
    assert architecture.cycles(graph) == [["a.py", "b.py", "c.py", "a.py"]]
    assert architecture.cycles({"a.py": {"b.py"}, "b.py": set()}) == []


def test_the_architecture_page_shows_the_code_graph():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert architecture.mermaid() in page, "run python tools/architecture.py and paste its graph into the page"
