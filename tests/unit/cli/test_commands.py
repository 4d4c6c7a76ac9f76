"""The ``ledgerbridge`` command as a whole: every module registers its commands, help lists them
in the order engineers know, and the sandboxes are neither needed nor imported until a sandbox or
demo command runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from cli.main import app

ROOT = Path(__file__).resolve().parents[3]

# `ledgerbridge --help`: the plain commands, then the groups, each with its subcommands.
COMMANDS = {
    "close": None,
    "close-status": None,
    "close-approve": None,
    "close-reject": None,
    "close-evidence": None,
    "sync": None,
    "status": None,
    "demo": None,
    "explain": None,
    "replay": None,
    "db": ["upgrade", "current"],
    "sandbox": ["zuora", "acumatica"],
    "secrets": ["generate-key", "rotate"],
    "period": ["show"],
    "journal-entry": ["create", "requests", "approve", "reject"],
    "mapping": ["check"],
    "connection": ["add", "list", "remove", "test", "callout-secret", "approval"],
    "user": ["add", "list", "set-role", "disable", "enable", "password"],
}


def test_help_lists_every_command_and_group_in_order():
    root = get_command(app)
    ctx = root.make_context("ledgerbridge", [], resilient_parsing=True)
    names = root.list_commands(ctx)

    assert names == list(COMMANDS)
    for name, subcommands in COMMANDS.items():
        group = root.get_command(ctx, name)
        listed = group.list_commands(ctx) if hasattr(group, "list_commands") else None
        assert listed == subcommands, name


def _run_without_sandbox(*args: str) -> subprocess.CompletedProcess[str]:
    """``ledgerbridge ARGS`` in a fresh interpreter where ``import sandbox`` fails, as it does
    when the sandboxes' distribution is not installed."""
    code = (
        "import sys\n"
        "sys.modules['sandbox'] = None\n"
        "from cli.main import main\n"
        f"sys.argv = ['ledgerbridge', *{list(args)!r}]\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "args", [("sandbox", "zuora"), ("sandbox", "acumatica"), ("demo", "--workdir", "{tmp}")]
)
def test_sandbox_and_demo_name_the_install_command_when_the_sandboxes_are_missing(tmp_path, args):
    workdir = tmp_path / "demo"
    result = _run_without_sandbox(*(a.format(tmp=workdir) for a in args))

    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install -e ./sandbox" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert not workdir.exists()  # the demo stopped before it started anything


def test_the_other_commands_run_without_the_sandboxes():
    result = _run_without_sandbox("secrets", "generate-key")

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 44  # a urlsafe-base64 Fernet key


def test_starting_the_command_imports_no_sandbox():
    code = "import sys, cli.main\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'sandbox'))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )

    assert result.stdout.strip() == "[]"


def test_usage_errors_exit_2_with_the_message_on_stderr():
    result = CliRunner().invoke(app, ["close", "  "])

    assert result.exit_code == 2
    assert "error: the period name must not be empty" in result.output
