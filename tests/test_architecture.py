"""The rules of docs/design.md that a machine can check: imports point down (no circle),
no library file over 600 lines, shared code never dispatches on a cell's name or config,
and importing jrnn or experiments has no side effects."""

import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "jrnn")
# Name dispatch is allowed at the edge only: format adapters and the theory-to-family map.
EDGE = ("interop", "prediction.py")


def _modules():
    for dirpath, _, files in os.walk(ROOT):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)
                yield rel, path


def _room(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def _import_graph():
    edges = set()
    for rel, path in _modules():
        mod = "jrnn." + rel[:-3].replace(os.sep, ".")
        mod = mod.removesuffix(".__init__")
        if mod == "jrnn":
            continue
        src = _room(mod)
        for node in ast.walk(ast.parse(open(path).read())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("jrnn."):
                    dst = _room(name)
                    target = os.path.join(ROOT, *dst.split(".")[1:])
                    if (os.path.isdir(target) or os.path.exists(target + ".py")) and dst != src:
                        edges.add((src, dst))
    return edges


def _cycles(edges):
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    edges = _import_graph()
    assert len(edges) > 20  # the graph was read
    assert _cycles(edges) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]


@pytest.mark.parametrize("rel, path", list(_modules()), ids=lambda v: str(v))
def test_library_files_stay_small(rel, path):
    with open(path) as f:
        n = sum(1 for _ in f)
    assert n <= 600, f"jrnn/{rel} has {n} lines; split it by concern (docs/design.md)"


def test_shared_code_never_dispatches_on_a_cells_name_or_config():
    pattern = re.compile(r"\bcell\.(name|config)\b\s*(==|!=|in\b|\[)|dict\(cell\.config\)")
    hits = []
    for rel, path in _modules():
        if rel.startswith(EDGE):
            continue
        for i, line in enumerate(open(path), 1):
            if pattern.search(line):
                hits.append(f"jrnn/{rel}:{i}: {line.strip()}")
    assert hits == []


def test_importing_sets_no_environment():
    code = (
        "import os; before = dict(os.environ); import jrnn, experiments, experiments.common; "
        "print(dict(os.environ) == before)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
