#!/usr/bin/env python3
"""The layering of weft's crates and folders, stated once and enforced.

A module may use only modules of its own layer or of layers below it, and
no modules use each other around a circle (within a layer too); a doc
comment may mention anything. Run by `make test` (`make layers`); exits 1
and names each offending line, or each circle, when the layering breaks.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# pgext/src, lowest layer first: each top-level module (a file or a folder
# of pgext/src) and the layer it belongs to.
PGEXT_LAYERS = [
    ("foundation", {"types", "nodes", "pgcall", "guc", "catalog", "error"}),
    ("storage", {"storage"}),
    ("plan", {"plan"}),
    ("exec", {"exec"}),
    ("hook", {"hook"}),
    ("sql", {"sql"}),
]

# runtime/src: the transport knows nothing of DataFusion plans.
RUNTIME_LAYERS = [
    ("transport", {"transport"}),
    ("spmd", {"spmd"}),
]

# Crates, lowest first, and the crate names a lower one must not use.
CRATES = [
    ("core/src", ["weft_runtime", "weft::", "pgrx", "datafusion", "tokio"]),
    ("runtime/src", ["weft::", "pgrx"]),
]

CRATE_PATH = re.compile(r"crate::([a-z_][a-z0-9_]*)")
CRATE_PATH_FULL = re.compile(r"crate::((?:[a-z_][a-z0-9_]*)(?:::[a-z_][a-z0-9_]*)*)")
SUPER_PATH = re.compile(r"super::([a-z_][a-z0-9_]*)")


def code_lines(path):
    """(line number, text) of the lines of `path` that are code, comments
    removed."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("//", 1)[0]
        if code.strip():
            yield number, code


def layer_of(module, layers):
    for rank, (_, members) in enumerate(layers):
        if module in members:
            return rank
    return None


def check_layers(src, layers):
    failures = []
    for path in sorted(src.rglob("*.rs")):
        top = path.relative_to(src).parts[0].removesuffix(".rs")
        own = layer_of(top, layers)
        if own is None:
            continue
        for number, code in code_lines(path):
            for used in CRATE_PATH.findall(code):
                rank = layer_of(used, layers)
                if rank is not None and rank > own:
                    failures.append(
                        f"{path.relative_to(ROOT)}:{number}: {layers[own][0]} uses crate::{used} "
                        f"({layers[rank][0]}, a higher layer)"
                    )
    return failures


def check_crates():
    failures = []
    for folder, banned in CRATES:
        for path in sorted((ROOT / folder).rglob("*.rs")):
            for number, code in code_lines(path):
                for name in banned:
                    if re.search(r"(?<![A-Za-z0-9_])" + re.escape(name), code):
                        failures.append(f"{path.relative_to(ROOT)}:{number}: uses {name.rstrip(':')}")
    return failures


def module_graph(src):
    """Each module of the crate at `src` (a file, or a folder's mod.rs, by
    its path: `storage::page`) and the modules it uses, its own ancestors
    and descendants aside."""
    modules = {}
    for path in src.rglob("*.rs"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "mod":
            parts = parts[:-1]
        if parts and parts != ["lib"]:
            modules["::".join(parts)] = path
    graph = {module: set() for module in modules}
    for module, path in modules.items():
        parent = "::".join(module.split("::")[:-1])
        for _, code in code_lines(path):
            uses = [r.split("::") for r in CRATE_PATH_FULL.findall(code)]
            uses += [(parent.split("::") if parent else []) + [r] for r in SUPER_PATH.findall(code)]
            for segments in uses:
                for k in range(len(segments), 0, -1):
                    used = "::".join(segments[:k])
                    if used in modules:
                        related = used == module or module.startswith(used + "::") or used.startswith(module + "::")
                        if not related:
                            graph[module].add(used)
                        break
    return graph


def circles(graph):
    """The strongly connected components of more than one module
    (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def check_circles(src):
    return [
        f"{src.relative_to(ROOT)}: modules that use each other around a circle: {', '.join(circle)}"
        for circle in circles(module_graph(src))
    ]


def main():
    failures = check_layers(ROOT / "pgext/src", PGEXT_LAYERS)
    failures += check_layers(ROOT / "runtime/src", RUNTIME_LAYERS)
    failures += check_circles(ROOT / "pgext/src")
    failures += check_circles(ROOT / "runtime/src")
    failures += check_crates()
    for failure in failures:
        print(failure)
    if failures:
        print(f"{len(failures)} import(s) against the layering (scripts/check-layers.py)")
        return 1
    print("layering: every module uses only its own layer and those below, and no circle of modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
