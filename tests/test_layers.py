"""The package graph flows one way, as the README's layout says: no import reaches up a layer, and no two modules
import each other (directly or around a circle). Imports inside functions count; ``TYPE_CHECKING`` ones do not."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rmp_zoo"
# Bottom to top; the README's layout line lists the same order.
LAYERS = ["machine", "compiling", "models", "data", "training", "conversion", "callbacks", "zoo", "cli", "__init__"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1] if len(parts) > 1 else "__init__")


def imports(path: Path) -> set[str]:
    """rmp_zoo modules that ``path`` imports, wherever the import statement sits, except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rmp_zoo")}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.startswith("rmp_zoo"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names if (PACKAGE.parent / f"{target}.{a.name}".replace(
                    ".", "/")).with_suffix(".py").exists()}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {t for t in imports(p) if t in modules and t != m} for m, p in modules.items()}


def test_no_import_reaches_up_a_layer():
    upward = sorted(f"{m} -> {t}" for m, targets in graph().items() for t in targets if layer(t) > layer(m))
    assert not upward, "imports from a lower layer to a higher one: " + ", ".join(upward)


def test_no_import_circle():
    edges = graph()
    # A package's __init__ re-exports its modules; what matters is module to module.
    edges = {m: {t for t in ts if not (m.startswith(t + ".") or t.startswith(m + "."))} for m, ts in edges.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])


def test_the_readme_states_these_layers():
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    line = next(line for line in readme.splitlines() if line.startswith("Layers, bottom to top:"))
    assert [w.strip(" `.,") for w in line.split(":", 1)[1].split("→")] == [
        f"rmp_zoo/{name}" + ("/" if (PACKAGE / name).is_dir() else ".py") for name in LAYERS[:-1]]
