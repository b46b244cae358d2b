"""Lines per source file and the longest functions of ``src/adarec`` in a checkout.

Usage (a script, not a test): ``python benchmarks/code_size.py [CHECKOUT] [--top N]``;
for an older commit, ``git worktree add --detach DIR COMMIT`` and pass DIR.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkout", nargs="?", type=Path, default=Path(__file__).resolve().parents[1])
    p.add_argument("--top", type=int, default=6, help="longest functions to list")
    args = p.parse_args()
    root = args.checkout / "src" / "adarec"
    files = sorted(root.rglob("*.py"))
    total, functions = 0, []
    for f in files:
        text = f.read_text()
        lines = len(text.splitlines())
        total += lines
        print(f"{lines:6d}  {f.relative_to(root)}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((node.end_lineno - node.lineno + 1,
                                  f"{f.relative_to(root)}:{node.name}"))
    print(f"{total:6d}  total ({len(files)} files)")
    print("longest functions:", ", ".join(f"{name} {n}" for n, name in
                                           sorted(functions, reverse=True)[: args.top]))


if __name__ == "__main__":
    main()
