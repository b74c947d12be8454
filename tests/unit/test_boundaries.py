"""The import boundaries of STYLE.md: services never import each other, shared never imports
services, and domain modules never import transport."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "dispatch", "volunteers", "notify")
TRANSPORT = ("faststream", "redis", "httpx", "fastapi", "starlette", "uvicorn")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service: str) -> None:
    for path in (ROOT / "services" / service).rglob("*.py"):
        for name in imports_of(path):
            for other in SERVICES:
                if other != service:
                    assert not name.startswith(f"services.{other}"), f"{path} imports {name}"


def test_shared_imports_no_service() -> None:
    for path in (ROOT / "shared").rglob("*.py"):
        assert not any(n.startswith("services") for n in imports_of(path)), path


@pytest.mark.parametrize("service", SERVICES)
def test_domain_code_imports_no_transport(service: str) -> None:
    domain = ROOT / "services" / service / "domain.py"
    paths = [domain] if domain.exists() else list((ROOT / "services" / service / "domain")
                                                  .rglob("*.py"))
    assert paths, f"{service} has no domain module"
    for path in paths:
        for name in imports_of(path):
            assert name.split(".")[0] not in TRANSPORT, f"{path} imports {name}"
