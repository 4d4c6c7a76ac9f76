"""The house plan's arrows, enforced: which package may import which."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# Modules allowed to import sandbox besides scripts/ and tests/.
SANDBOX_IMPORTERS = {"cli/main.py", "cli/demo.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", _modules("shared"), ids=_rel)
def test_shared_never_imports_worker_or_celery(path):
    bad = {n for n in _imports(path) if n.split(".")[0] in {"worker", "celery"}}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _modules("shared/zuora") + _modules("shared/erp"), ids=_rel)
def test_api_clients_never_import_the_ledger(path):
    bad = {n for n in _imports(path) if n.startswith("shared.ledger")}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}: report exchanges to the audit hook instead"


@pytest.mark.parametrize(
    "path",
    [p for p in _modules("shared") + _modules("worker") if not _rel(p).startswith("sandbox/")],
    ids=_rel,
)
def test_only_cli_demo_and_bench_import_the_sandbox(path):
    if _rel(path) in SANDBOX_IMPORTERS:
        return
    bad = {n for n in _imports(path) if n.startswith("sandbox")}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"
