"""The project uses its dependencies' public APIs only: an upgrade of Dagster, dbt or MLflow must not
break it. This reads every Python file of the project and fails on any of:

- an import of a private module or name of another package (`dagster._core...`, `from x import _y`);
- an attribute path into another package's private parts (`multiprocessing.util._exit_function`);
- a private method or attribute of another package's class redefined in a subclass (an override
  such as dagster-dbt's `_cli_version`): the base class is imported to see what it has.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from tests.conftest import REPO_ROOT

OURS = {"orchestration", "ingestion", "expectations", "ml", "semantic", "reports", "bench", "tests"}
SKIP = {".venv", "node_modules", "dbt_project", "data", ".git"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _python_files() -> list[Path]:
    return sorted(p for p in REPO_ROOT.rglob("*.py") if not SKIP & set(p.relative_to(REPO_ROOT).parts))


def violations(source: str, where: str) -> list[str]:
    tree = ast.parse(source)
    found = []
    # names in this file bound to other packages' modules or classes: name -> (module, attribute or None)
    foreign: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in OURS:
                    if any(_private(part) for part in alias.name.split(".")):
                        found.append(f"{where}:{node.lineno}: imports private module {alias.name}")
                    bound = alias.asname or alias.name.split(".")[0]
                    foreign[bound] = (alias.name if alias.asname else bound, None)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in OURS or node.module == "__future__":
                continue
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{where}:{node.lineno}: imports from private module {node.module}")
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{where}:{node.lineno}: imports private name {node.module}.{alias.name}")
                foreign[alias.asname or alias.name] = (node.module, alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in foreign:
                found.append(f"{where}:{node.lineno}: reaches into private {ast.unparse(node)}")
        elif isinstance(node, ast.ClassDef):
            private = []
            for item in node.body:
                names = [item.name] if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) else \
                    [t.id for t in getattr(item, "targets", [getattr(item, "target", None)]) if isinstance(t, ast.Name)]
                private += [(item, name) for name in names if _private(name)]
            if private:  # only then is it worth importing the bases
                bases = [base for base in (_resolve(b, foreign) for b in node.bases) if base is not None]
                for item, name in private:
                    if any(hasattr(base, name) for base in bases):
                        found.append(f"{where}:{item.lineno}: class {node.name} overrides private {name} of a "
                                     "dependency's class")
    return found


def _resolve(base: ast.expr, foreign: dict[str, tuple[str, str | None]]):
    """The class a base expression names, where it comes from another package; else None."""
    if isinstance(base, ast.Name) and base.id in foreign:
        module, attribute = foreign[base.id]
        path = [attribute] if attribute else []
    elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id in foreign:
        module, attribute = foreign[base.value.id]
        path = [attribute, base.attr] if attribute else [base.attr]
    else:
        return None
    try:
        found = importlib.import_module(module)
        for part in path:
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) else None


def test_the_checker_finds_each_kind_of_private_use():
    assert violations("from dagster._core.launcher import LaunchRunContext", "a.py") == [
        "a.py:1: imports from private module dagster._core.launcher"]
    assert violations("import multiprocessing.util\nmultiprocessing.util._exit_function()", "b.py") == [
        "b.py:2: reaches into private multiprocessing.util._exit_function"]
    assert violations("from dagster_dbt import DbtCliResource\nclass R(DbtCliResource):\n"
                      "    def _cli_version(self): ...", "c.py") == [
        "c.py:3: class R overrides private _cli_version of a dependency's class"]
    assert violations("from semantic.service import _probe\nclass A:\n    def _mine(self): ...", "ok.py") == []


def test_the_project_uses_public_apis_only():
    found = [v for path in _python_files() for v in violations(path.read_text(), str(path.relative_to(REPO_ROOT)))]
    assert found == [], "\n".join(found)
