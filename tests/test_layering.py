"""The runtime (what the submission zip holds) never imports the tools that import it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = [ROOT / "model.py", *sorted((ROOT / "portfolio").rglob("*.py")), *sorted((ROOT / "metafeatures").rglob("*.py"))]
TOOLS = ("harness", "offline_meta")


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, wherever the import statement is."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_runtime_imports_no_tool_module():
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & set(TOOLS))
        for path in RUNTIME
        if imported_modules(path) & set(TOOLS)
    }
    assert offenders == {}


def test_layering_check_sees_a_tool_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from harness.scoring import alc\n")
    assert imported_modules(module) == {"harness"}
