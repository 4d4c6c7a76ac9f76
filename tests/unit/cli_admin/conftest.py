"""Fixtures for the admin-command unit tests (no network: a SQLite ledger in tmp_path)."""

from __future__ import annotations

import pytest

from tests.unit.cli_admin.support import Cli, make_cli


@pytest.fixture
def cli(tmp_path) -> Cli:
    return make_cli(tmp_path)
