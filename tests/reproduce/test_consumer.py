"""reproduce/ is a consumer of the library: it imports perceptreg and never runs its command
line in another process; perceptreg knows nothing of it; its modules are short."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = {path.stem: ast.parse(path.read_text()) for path in sorted((ROOT / "reproduce").glob("*.py"))}


def imported(tree: ast.Module) -> set[str]:
    """The modules ``tree`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_no_module_imports_the_command_line():
    cli = {name for name, tree in MODULES.items() if any(m.startswith("perceptreg.cli") for m in imported(tree))}
    assert cli == set()


def test_the_one_subprocess_is_git():
    users = {name for name, tree in MODULES.items() if "subprocess" in imported(tree)}
    assert users == {"provenance"}
    calls = [node for node in ast.walk(MODULES["provenance"]) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr == "run"]
    assert len(calls) == 2 and all(call.args[0].elts[0].value == "git" for call in calls)


def test_the_library_imports_nothing_of_it():
    library = [path for path in (ROOT / "src").rglob("*.py")
               if any(m.split(".")[0] == "reproduce" for m in imported(ast.parse(path.read_text())))]
    assert library == []


def test_modules_and_functions_are_short():
    long_modules = {name for name in MODULES if len((ROOT / "reproduce" / f"{name}.py").read_text().splitlines()) > 400}
    long_functions = {f"{name}.{node.name}" for name, tree in MODULES.items() for node in ast.walk(tree)
                      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.end_lineno - node.lineno + 1 > 60}
    assert long_modules == set() and long_functions == set()
