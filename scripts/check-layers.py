#!/usr/bin/env python3
"""The layering of weft's crates and folders, stated once and enforced.

A module may use only modules of its own layer or of layers below it; a
doc comment may mention anything. Run by `make test` (`make layers`);
exits 1 and names each offending line when a lower layer reaches up.
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


def main():
    failures = check_layers(ROOT / "pgext/src", PGEXT_LAYERS)
    failures += check_layers(ROOT / "runtime/src", RUNTIME_LAYERS)
    failures += check_crates()
    for failure in failures:
        print(failure)
    if failures:
        print(f"{len(failures)} import(s) against the layering (scripts/check-layers.py)")
        return 1
    print("layering: every module uses only its own layer and those below")
    return 0


if __name__ == "__main__":
    sys.exit(main())
