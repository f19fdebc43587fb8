#!/usr/bin/env python3
"""Fails when the files of a crate's `src/` import each other in a circle.

Usage: scripts/module_cycles.py [SRC_DIR ...]   (default: vault-ops-core/src)

The graph: one node per source file (`a/b.rs` or `a/b/mod.rs` is module `a::b`). File F
depends on file G when F names a path into G: `use crate::g::...`, an inline
`crate::g::item`, `super::...`, `self::...` or `use child::...` (resolved from F's module), including every
path inside `use` groups (`use crate::{a::X, b::{Y, Z}}`). A path is resolved to the longest
module prefix that has a file; `crate::Item` re-exported by `lib.rs` (`pub use m::Item`)
resolves to the file it comes from, so `lib.rs` (the facade) is not a node. `mod x;`
declarations are containment, not dependency, and are not edges. `#[cfg(test)]` code counts
like any other. Comments and string literals are ignored.

Prints every strongly connected component of two or more files with the edges inside it
(each with the line that makes it) and exits 1; prints the node and edge counts and exits 0
when the graph is acyclic.
"""
import os
import re
import sys


def strip_comments_and_strings(text):
    """Blank out comments, string and char literals (keeping line breaks)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 70]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append("\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append("\n" * text.count("\n", i, j + 1))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 12]):
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            i += len(m.group(0)) if m else 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (aliases and globs trimmed)."""
    tree = re.sub(r"\s+", "", tree)
    depth, top = 0, []
    start = 0
    for k, ch in enumerate(tree):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            top.append(tree[start:k])
            start = k + 1
    top.append(tree[start:])
    paths = []
    for item in filter(None, top):
        brace = item.find("{")
        if brace < 0:
            paths.append(re.sub(r"as\w+$", "", item.split(" as ")[0]).rstrip(":*"))
            continue
        prefix = item[:brace]
        inner = item[brace + 1:item.rfind("}")]
        for sub in expand_use(inner):
            paths.append((prefix + sub) if sub != "self" else prefix.rstrip(":"))
    return paths


def module_of(rel):
    parts = rel[:-3].split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def main(src):
    files = {}
    for dirpath, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                rel = os.path.relpath(os.path.join(dirpath, name), src)
                files[module_of(rel)] = rel
    texts = {m: strip_comments_and_strings(open(os.path.join(src, rel), encoding="utf-8").read())
             for m, rel in files.items()}

    # lib.rs re-exports: crate::Item -> the module path it comes from.
    reexports = {}
    for m in re.finditer(r"\bpub\s+use\s+([^;]+);", texts.get((), "")):
        for p in expand_use(m.group(1)):
            segs = [s for s in p.split("::") if s and s != "crate"]
            if segs:
                reexports[segs[-1]] = tuple(segs[:-1])

    def resolve(segs):
        """The file (module) a path's longest existing module prefix names."""
        if segs and segs[0] in reexports and segs[0] not in {s[0] for s in files if s}:
            segs = list(reexports[segs[0]]) + segs
        for k in range(len(segs), 0, -1):
            if tuple(segs[:k]) in files:
                return tuple(segs[:k])
        return None

    edges = {}
    path_re = re.compile(r"\b(crate|super|self)((?:::(?:super|self|\w+))+)")
    for mod, text in texts.items():
        if mod == ():
            continue
        # Inline modules (`mod tests { ... }`): (start, end, name), so that `super::` inside
        # one names the file's own module.
        inline = []
        for m in re.finditer(r"\bmod\s+(\w+)\s*\{", text):
            depth, j = 0, m.end() - 1
            while j < len(text):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            inline.append((m.end(), j, m.group(1)))
        uses = []
        for m in re.finditer(r"\buse\s+([^;]*);", text):
            for p in expand_use(m.group(1)):
                first = p.split("::")[0]
                if first in ("crate", "super", "self"):
                    uses.append((p, m.start()))
                elif tuple(mod) + (first,) in files:
                    # `use child::Item` (2018 paths): relative to this module.
                    uses.append(("self::" + p, m.start()))
        for m in path_re.finditer(text):
            uses.append((m.group(1) + m.group(2), m.start()))
        for path, pos in uses:
            line = text.count("\n", 0, pos) + 1
            segs = [s for s in path.split("::") if s]
            # The module a `super::`/`self::` path starts from.
            base = list(mod) + [name for (a, b, name) in inline if a <= pos <= b]
            if segs[0] == "crate":
                base, segs = [], segs[1:]
            else:
                while segs and segs[0] in ("super", "self"):
                    if segs[0] == "super":
                        base = base[:-1]
                    segs = segs[1:]
            target = resolve(base + segs) if (base + segs) else None
            if target is None or target == mod or target == ():
                continue
            edges.setdefault(mod, {}).setdefault(target, line)

    # Tarjan's strongly connected components.
    index, low, on_stack, stack, sccs = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(files):
        if v not in index:
            visit(v)
    n_edges = sum(len(t) for t in edges.values())
    if not sccs:
        print(f"{src}: no import cycle among {len(files)} files ({n_edges} file-to-file imports)")
        return 0
    for comp in sccs:
        names = sorted(files[m] for m in comp)
        print(f"{src}: import cycle among {len(comp)} files: {', '.join(names)}")
        for a in sorted(comp):
            for b, line in sorted(edges.get(a, {}).items()):
                if b in comp:
                    print(f"    {files[a]}:{line} -> {files[b]}")
    return 1


if __name__ == "__main__":
    dirs = sys.argv[1:] or ["vault-ops-core/src"]
    sys.exit(max(main(d.rstrip("/")) for d in dirs))
