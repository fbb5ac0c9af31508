"""The package's shape: no import circle in wsapp/, no module over about 400 lines unless
its docstring says why."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "wsapp"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> wsapp modules it imports anywhere (an import inside a function is still a
    dependency), except under `if TYPE_CHECKING:`."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for sub in ast.walk(node):  # imports inside functions count too
                if isinstance(sub, ast.Import):
                    found |= {a.name for a in sub.names}
                elif isinstance(sub, ast.ImportFrom):
                    base = sub.module or ""
                    if sub.level:
                        anchor = package.split(".")[: len(package.split(".")) - sub.level + 1]
                        base = ".".join([*anchor, base] if base else anchor)
                    subs = {f"{base}.{a.name}" for a in sub.names} & set(modules)
                    # `from pkg import module` needs the module; `from pkg import name`, pkg.
                    found |= subs if len(subs) == len(sub.names) else {base} | subs
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_import_circle_in_wsapp():
    graph = _imports()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_modules_are_small_or_say_why():
    long = []
    for path in ROOT.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and f"longer than {MAX_LINES} lines" not in doc:
            long.append(f"{path.relative_to(ROOT.parent)}: {lines} lines")
    assert not long, long
