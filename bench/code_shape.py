"""The shape of the code, for docs/architecture.md's before/after table: modules per folder, lines of code
per package, the longest functions, and import cycles between modules (function-level imports included).

    python bench/code_shape.py            # this checkout
    python bench/code_shape.py --repo DIR # another checkout, e.g. a worktree of an older commit
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGES = ("cvae", "search", "scripts", "cluster")


def modules(repo: Path) -> dict[str, Path]:
    """Dotted module name -> file, for the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((repo / package).rglob("*.py")):
            parts = path.relative_to(repo).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def code_lines(path: Path) -> int:
    """Lines that are neither blank nor comments (docstrings count: they are read)."""
    return sum(1 for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#"))


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project's modules that `name` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` depends on the module; `from module import name` on the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan): each holds at least one import cycle."""
    index, low, stack, on, groups, counter = {}, {}, [], set(), [], [0]

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
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return groups


def longest_functions(repo: Path, files: dict[str, Path], count: int = 10) -> list[tuple[int, str]]:
    found = []
    for path in files.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{path.relative_to(repo).as_posix()}:{node.name}"
                found.append((node.end_lineno - node.lineno + 1, where))
    return sorted(found, reverse=True)[:count]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1], help="a checkout")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    files = modules(repo)
    graph = {name: imports(name, path, set(files)) for name, path in files.items()}
    folders: dict[str, list[str]] = {}
    for name, path in files.items():
        folders.setdefault(path.parent.relative_to(repo).as_posix(), []).append(name)
    print("| folder | modules | lines of code |\n| --- | --- | --- |")
    for folder, names in sorted(folders.items()):
        print(f"| `{folder}/` | {len(names)} | {sum(code_lines(files[n]) for n in names)} |")
    for package in PACKAGES:
        lines = sum(code_lines(p) for n, p in files.items() if n.split(".")[0] == package)
        print(f"package `{package}`: {lines} lines of code")
    print("\nlongest functions (lines):")
    for lines, where in longest_functions(repo, files):
        print(f"  {lines:4d} {where}")
    groups = cycles(graph)
    print(f"\nimport cycles: {len(groups)} group(s)")
    for group in groups:
        print("  " + " <-> ".join(group))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
