#!/usr/bin/env python3
"""Fails when two of the crate's top-level modules import each other, directly or not.

Usage: scripts/check-layers.py [SRC]   (default: src)

Reads every `crate::MODULE` path in the shipped code (unit tests and comments aside),
builds the graph between top-level modules and prints each cycle (strongly connected
component) with its edges; exit 1 if there is one. With --graph, prints every edge.
"""
import pathlib, re, sys
args = [a for a in sys.argv[1:] if not a.startswith("--")]
src = pathlib.Path(args[0] if args else "src")
ref = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
graph = {}
for path in src.rglob("*.rs"):
    rel = path.relative_to(src)
    if rel.name in ("lib.rs", "main.rs") and len(rel.parts) == 1:
        continue
    module = rel.parts[0].removesuffix(".rs")
    text = path.read_text()
    # unit tests may reach anywhere: only the shipped code counts
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)[0]
    if rel.name == "tests.rs":
        continue
    # comments name modules without depending on them
    text = "\n".join(l.split("//")[0] for l in text.splitlines())
    for m in ref.findall(text):
        if m != module:
            graph.setdefault(module, set()).add(m)
    graph.setdefault(module, set())
# Tarjan's strongly connected components
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
def visit(v):
    index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
    for w in sorted(graph.get(v, ())):
        if w not in graph: continue
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
sys.setrecursionlimit(10000)
for v in sorted(graph):
    if v not in index: visit(v)
cycles = [sorted(c) for c in sccs if len(c) > 1]
for c in cycles:
    edges = [f"{a} -> {b}" for a in c for b in sorted(graph[a]) if b in c]
    print("cycle:", ", ".join(c), "|", "; ".join(edges))
if "--graph" in sys.argv:
    for a in sorted(graph):
        print(f"{a} -> {', '.join(sorted(graph[a]))}")
print(f"{len(graph)} modules, {sum(len(v) for v in graph.values())} edges, {len(cycles)} cycles")
sys.exit(1 if cycles else 0)
