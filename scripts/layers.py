#!/usr/bin/env python3
"""Checks the layering of edge/src: no import cycle among its modules (by
file), and no module importing a folder above its own in ORDER. Reads every
`crate::` and `super::` path; exits 1 and names the offenders otherwise."""
import os
import re
import sys

ORDER = ["error", "config", "obs", "limits", "worker", "pool", "exec", "front", "threads", "dispatch", "control", "engine", "lib"]
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "edge", "src")


def module_of(path):
    p = path[:-3]
    if p.endswith("/mod"):
        p = p[:-4]
    return p.replace("/", "::")


def main():
    files = []
    for root, _, names in os.walk(SRC):
        # The binary (main.rs and its main/ folder) is above every layer.
        if os.path.relpath(root, SRC).split(os.sep)[0] == "main":
            continue
        for n in names:
            if n.endswith(".rs") and n != "main.rs":
                files.append(os.path.relpath(os.path.join(root, n), SRC))
    mods = {module_of(f): f for f in files}
    edges = {}
    for m, f in mods.items():
        text = open(os.path.join(SRC, f)).read()
        deps = set()
        for path in re.findall(r"crate::([a-z_]+(?:::[a-z_]+)*)", text):
            parts = path.split("::")
            for k in range(len(parts), 0, -1):
                cand = "::".join(parts[:k])
                if cand in mods:
                    deps.add(cand)
                    break
        parent = m.rsplit("::", 1)[0] if "::" in m else ""
        here = m if f.endswith("mod.rs") else parent
        for name in re.findall(r"super::([a-z_]+)", text):
            base = here.rsplit("::", 1)[0] if f.endswith("mod.rs") and "::" in here else parent
            cand = f"{base}::{name}" if base else name
            if cand in mods:
                deps.add(cand)
            elif base in mods:
                deps.add(base)
        deps.discard(m)
        edges[m] = deps
    problems = []
    state = {}

    def visit(u, stack):
        state[u] = 1
        stack.append(u)
        for v in sorted(edges[u]):
            if state.get(v) == 1:
                problems.append("cycle: " + " -> ".join(stack[stack.index(v):] + [v]))
            elif not state.get(v):
                visit(v, stack)
        stack.pop()
        state[u] = 2

    for m in sorted(edges):
        if not state.get(m):
            visit(m, [])
    rank = {n: i for i, n in enumerate(ORDER)}
    for m, deps in sorted(edges.items()):
        a = m.split("::")[0]
        if a not in rank:
            problems.append(f"{m}: its folder is not in ORDER")
            continue
        for d in sorted(deps):
            b = d.split("::")[0]
            if a != b and rank[b] > rank[a]:
                problems.append(f"upward: {m} uses {d}")
    for p in problems:
        print(p)
    print(f"layers: {len(mods)} modules, {sum(len(d) for d in edges.values())} imports, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
