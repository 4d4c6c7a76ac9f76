"""``ledgerbridge close approve 7`` runs ``close-approve 7``; a period name is left alone."""

from __future__ import annotations

import pytest

from cli.main import with_close_subcommands


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["close", "approve", "7", "--as", "sam"], ["close-approve", "7", "--as", "sam"]),
        (["close", "reject", "7"], ["close-reject", "7"]),
        (["close", "status"], ["close-status"]),
        (["close", "evidence", "December 2024"], ["close-evidence", "December 2024"]),
        (["close", "December 2024", "--wait"], ["close", "December 2024", "--wait"]),
        (["close"], ["close"]),
        (["sync", "approve"], ["sync", "approve"]),
        (["--help"], ["--help"]),
    ],
)
def test_close_subcommands_are_the_hyphenated_commands(argv, expected):
    assert with_close_subcommands(argv) == expected


def test_close_approve_is_listed_in_the_help_of_close_approve():
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, with_close_subcommands(["close", "approve", "--help"]))
    assert result.exit_code == 0
    assert "Approve what a close awaiting approval will post" in result.output
