"""The packages are layered: crm_handoff at the bottom, connectors and mappings above it
(neither imports the other), sync on top. An import that runs upward fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("crm_handoff", "connectors", "mappings", "sync")
MAY_IMPORT = {
    "crm_handoff": {"crm_handoff"},
    "connectors": {"crm_handoff", "connectors"},
    "mappings": {"crm_handoff", "mappings"},
    "sync": set(OURS),
}


def _imports(path: Path) -> set[str]:
    """Top-level package names of ours that a module imports (anywhere in it)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(OURS)


@pytest.mark.parametrize("package", OURS)
def test_no_upward_imports(package):
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imports(path) - MAY_IMPORT[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from sync.state import StateStore\nimport mappings.models\n")
    assert _imports(module) == {"sync", "mappings"}
