"""The package's layout rules, checked on the source: no import cycles between picat modules
(function-level imports included), and no module importing another module's ``_private`` name."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "picat"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def picat_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported picat module, imported names) for every import statement in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                and node.module.split(".")[0] == "picat"):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "picat"]
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names in picat_imports(path):
            # `from picat.x import y` imports module picat.x.y when y is a module, else picat.x.
            targets = [f"{target}.{item}" for item in names if f"{target}.{item}" in modules] or [target]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                return stack[stack.index(child):] + [child]
            if child not in state and (cycle := visit(child)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_picat_modules_import_each_other_without_cycles():
    # A package's __init__ importing its own submodules is the usual re-export, not a cycle
    # between concerns; leave those edges out.
    graph = {name: {t for t in targets if not (name.endswith(("__init__",)) or t.startswith(name + "."))}
             for name, targets in import_graph().items()}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_module_imports_another_modules_private_name():
    offenders = [f"{module_name(path)} imports {name} from {target}"
                 for path in PACKAGE.rglob("*.py") for target, names in picat_imports(path)
                 for name in names if name.startswith("_") and not name.startswith("__")]
    assert not offenders, "\n".join(offenders)
