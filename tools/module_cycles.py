#!/usr/bin/env python3
"""Import cycles between the top-level modules of src/ (issue: no cycles between them).

Prints each `crate::X` edge between top-level modules, outside comments and test code, and
exits 1 if the graph has a cycle, naming the files behind each edge of it.
"""
import collections
import os
import re
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
edges = collections.defaultdict(lambda: collections.defaultdict(set))
for base, _, files in os.walk(root):
    for name in files:
        path = os.path.join(base, name)
        rel = os.path.relpath(path, root)
        if not name.endswith(".rs") or name.endswith("_tests.rs") or name == "tests.rs":
            continue
        top = rel.split("/")[0].removesuffix(".rs")
        text = open(path).read()
        text = re.split(r"#\[cfg\(test\)\]\s*(?:#\[path[^\]]*\]\s*)?mod tests", text)[0]
        code = "\n".join(line.split("//")[0] for line in text.splitlines())
        for dep in re.findall(r"crate::(\w+)", code):
            if dep != top:
                edges[top][dep].add(rel)

def cycle_from(start):
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, {}):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None

found = set()
for module in sorted(edges):
    c = cycle_from(module)
    if c and frozenset(c) not in found:
        found.add(frozenset(c))
        print("cycle: " + " -> ".join(c))
        for a, b in zip(c, c[1:]):
            print(f"  {a} -> {b}: {', '.join(sorted(edges[a][b]))}")
if "-v" in sys.argv:
    for a in sorted(edges):
        print(a, "->", ", ".join(sorted(edges[a])))
sys.exit(1 if found else 0)
