"""The package's architecture, read from its source: packages form layers, no module
imports one above it or sits in an import circle, and no module is over 400 lines."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# Bottom up. A package imports only packages of lower layers (and modules of its own);
# packages that share a layer are independent of each other.
# adversarial sits below training: adversarial training (training.adversarial_training) makes its
# examples with adversarial.attacks' PGD, the one home of PGD.
LAYERS = (("core", "display"), ("storage",), ("data",), ("runs", "measures"), ("adversarial",), ("training",),
          ("figures",), ("edits",), ("attaching", "attacking", "sweeps"), ("views",), ("cli",))
MAX_LINES = 400
MAX_COMMAND_LINES = 150  # a command module only parses, calls the library and prints
MAX_FUNCTION_LINES = 60
LONG_BY_DESIGN = {"perceptreg.training.train._train"}  # the training loop, read top to bottom in one place


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in (SRC / "perceptreg").rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The perceptreg modules ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("perceptreg")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("perceptreg"):
            for alias in node.names:  # `from perceptreg.x import y`: the submodule y, or a name of x
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(path, set(found)) - {name} for name, path in found.items()}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else "(top)"


def layer_of(package: str) -> int:
    if package == "(top)":
        return len(LAYERS)
    return next(i for i, names in enumerate(LAYERS) if package in names)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle found by a depth-first search (each reported once, from where it closes)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"
    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_every_package_has_a_layer():
    packages = {package_of(m) for m in modules()} - {"(top)"}
    assert packages == {p for layer in LAYERS for p in layer}


def test_no_import_circle():
    assert circles(graph()) == []


def test_no_package_imports_one_above_it_or_beside_it():
    wrong = [f"{source} -> {target}" for source, targets in graph().items() for target in targets
             if package_of(source) != package_of(target)
             and layer_of(package_of(target)) >= layer_of(package_of(source))]
    assert wrong == []


def test_the_top_level_imports_nothing_eagerly():
    # `import perceptreg` (and so every --help) must not pay for torch: its names load on first use,
    # by core/lazy.py, which imports nothing of ours
    edges = graph()
    assert edges["perceptreg"] == {"perceptreg.core.lazy"} and edges["perceptreg.core.lazy"] == set()


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_command_module_is_over_150_lines():
    long = {name: n for name, path in modules().items() if name.endswith("_commands")
            and (n := len(path.read_text().splitlines())) > MAX_COMMAND_LINES}
    assert long == {}


def long_functions(path: Path, module: str) -> dict[str, int]:
    """The functions (and methods) of ``path`` over MAX_FUNCTION_LINES lines, by dotted name."""
    return {f"{module}.{node.name}": node.end_lineno - node.lineno + 1 for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES}


def test_no_function_is_over_60_lines_but_the_training_loop():
    long = {name: n for module, path in modules().items() for name, n in long_functions(path, module).items()}
    assert set(long) - LONG_BY_DESIGN == set()


def test_long_functions_counts_a_function_by_hand(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def short():\n    return 1\n\n\ndef long():\n" + "    x = 1\n" * 60)
    assert long_functions(source, "m") == {"m.long": 61}


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"a"}}, [["a", "b", "a"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, [["b", "c", "b"]]),
])
def test_circles_finds_a_circle_by_hand(edges, expected):
    assert circles(edges) == expected
