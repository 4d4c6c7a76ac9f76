"""The house's arrows are import-linter contracts (pyproject.toml ``[tool.importlinter]``): they
hold for the tree as it is, and a wrong import breaks them (each case adds one to a copy)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LINT = str(Path(sys.executable).with_name("lint-imports"))
PACKAGES = ("shared", "worker", "cli", "sandbox", "bench")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first: the copy's packages, not the installed (editable) ones, are analysed.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [LINT, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("house")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_contracts_hold_for_the_tree():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("files", "broken"),
    [
        ({"shared/_probe.py": "import worker.app\n"}, "shared (the domain) never imports"),
        ({"shared/_probe.py": "import celery\n"}, "shared (the domain) never imports"),
        ({"worker/_probe.py": "import cli.main\n"}, "the Procfile's processes never import"),
        ({"cli/_probe.py": "import sandbox.server\n"}, "the CLI never imports the benchmark"),
        ({"sandbox/_probe.py": "import shared.errors\n"}, "the sandboxes stand alone"),
        ({"shared/zuora/_probe.py": "import shared.ledger.repo\n"}, "never import the ledger"),
        (
            {"shared/ledger/_probe.py": "import shared.item_level.posting\n"},
            "the ports never import the flows",
        ),
        (
            {
                "shared/_cycle_a.py": "import shared._cycle_b\n",
                "shared/_cycle_b.py": "import shared._cycle_a\n",
            },
            "no import cycles",
        ),
    ],
    ids=[
        "shared->worker",
        "shared->celery",
        "worker->cli",
        "cli->sandbox",
        "sandbox->shared",
        "client->ledger",
        "port->flow",
        "cycle",
    ],
)
def test_a_wrong_import_breaks_them(tree: Path, files: dict[str, str], broken: str):
    try:
        for name, text in files.items():
            (tree / name).write_text(text)
        result = _lint(tree)
    finally:
        for name in files:
            (tree / name).unlink()
    assert result.returncode != 0
    words = " ".join(result.stdout.split())  # contract names wrap in the report
    (name,) = [c["name"] for c in CONTRACTS if broken in c["name"]]
    assert f"{name} BROKEN" in words  # (a port importing a flow also makes a cycle: two break)
    assert "BROKEN" in result.stdout
