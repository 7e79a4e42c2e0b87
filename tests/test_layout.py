"""The package's layout keeps its rules (docs/architecture.md): imports run one way between the layers
(import-linter's layers contract in pyproject.toml), no module imports another module's private name, no
module over 400 lines and no function over 80, and the README's Layout section names every subpackage."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "alfa"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def lint_imports(cwd: Path, package_parent: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(exe)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(package_parent)},
    )


def test_layers_contract_is_kept():
    result = lint_imports(ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_layers_contract_catches_an_upward_import(tmp_path):
    """The contract is live: the same check on a copy of the package in which the bottom layer imports the
    CLI fails, naming the import."""
    shutil.copytree(PACKAGE, tmp_path / "alfa", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    cache = tmp_path / "alfa" / "llm" / "cache.py"
    cache.write_text(cache.read_text() + "\nfrom alfa.cli import main  # an upward import\n")
    result = lint_imports(tmp_path, tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "alfa.llm.cache -> alfa.cli" in result.stdout


def test_the_no_circle_contract_catches_two_modules_that_import_each_other(tmp_path):
    """The second contract is live too: a lazy import of alfa.data.card from the module card itself imports (the
    circle card.py and method_card.py had) breaks it, naming the dependency to remove."""
    shutil.copytree(PACKAGE, tmp_path / "alfa", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    method_card = tmp_path / "alfa" / "data" / "method_card.py"
    method_card.write_text(method_card.read_text() + "\n\ndef _circle():\n    from alfa.data.card import write_card\n")
    result = lint_imports(tmp_path, tmp_path)
    assert result.returncode != 0
    assert "No cycles are allowed in alfa.data" in result.stdout


def test_no_module_imports_a_private_name_of_another():
    offenders = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("alfa"):
                offenders += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                ]
    assert offenders == [], "a helper two modules share belongs, public, in the lower one: " + ", ".join(offenders)


def test_modules_and_functions_stay_short():
    long_modules = [
        f"{p.relative_to(ROOT)} ({n} lines)"
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    long_functions = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long_modules == [], f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    assert long_functions == [], f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"


def test_readme_layout_names_every_subpackage():
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`alfa/(\w+)/`", layout))
    actual = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert named == actual, f"README Layout names {sorted(named)}, the package has {sorted(actual)}"
    assert "data_cards/" in layout and "docs/architecture.md" in layout
