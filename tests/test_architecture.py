"""The import graph is the architecture: every import of a resnas module sits at the top of its file, so no cycle
hides behind a lazy import (the one exception: the CLI's command registry imports the command being run by name);
modules stay small; the report and pruning do not depend on the search."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "resnas"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _nested_imports(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.level > 0 or (inner.module or "").startswith("resnas")):
                    out.append(f"line {inner.lineno}: from {'.' * inner.level}{inner.module or ''}")
    return out


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_lazy_internal_imports(path):
    assert _nested_imports(ast.parse(path.read_text())) == []


def _calls(tree: ast.AST, name: str) -> int:
    return sum(isinstance(node, ast.Call) and name in (getattr(node.func, "attr", None), getattr(node.func, "id", None))
               for node in ast.walk(tree))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_only_the_command_registry_imports_by_name(path):
    tree = ast.parse(path.read_text())
    assert _calls(tree, "import_module") == (path == PACKAGE / "cli" / "commands" / "__init__.py")
    if path != PACKAGE / "export.py":  # which checks that the optional onnx packages are installed
        assert _calls(tree, "__import__") == 0


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_module_size(path):
    assert len(path.read_text().splitlines()) <= 300


@pytest.mark.parametrize("module", ["resnas.report", "resnas.prune", "resnas.records", "resnas.fit"])
def test_does_not_import_search(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('resnas.search')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_package_is_in_the_wheel():
    """setuptools is given the package list (the shipped data folders need it), so a new subpackage must join it."""
    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
