"""Console users: argon2 passwords, the ledger's user store, and ``ledgerbridge user ...``."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from shared.ledger.models import UserRole, utcnow
from shared.ledger.users import UnknownUser, UserExists, check_user_name, parse_role
from shared.passwords import (
    WeakPassword,
    check_strength,
    hash_password,
    needs_rehash,
    verify_password,
)
from tests.unit.cli_admin.support import Cli, make_cli

PASSWORD = "correct horse battery staple"


@pytest.fixture
def cli(tmp_path) -> Cli:
    return make_cli(tmp_path)


def test_a_password_is_stored_as_an_argon2id_hash_that_verifies_only_itself():
    stored = hash_password(PASSWORD)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, PASSWORD + "!")
    assert not verify_password("not a hash", PASSWORD)
    assert hash_password(PASSWORD) != stored  # salted
    assert not needs_rehash(stored)
    assert needs_rehash("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo")


def test_short_passwords_are_refused():
    with pytest.raises(WeakPassword, match="at least 12"):
        check_strength("short")
    check_strength("twelve chars")


def test_roles_rank_viewer_preparer_approver_admin():
    assert UserRole.ADMIN.at_least(UserRole.APPROVER)
    assert UserRole.APPROVER.at_least(UserRole.PREPARER)
    assert UserRole.PREPARER.at_least(UserRole.VIEWER)
    assert not UserRole.PREPARER.at_least(UserRole.APPROVER)
    assert not UserRole.VIEWER.at_least(UserRole.PREPARER)
    assert parse_role(" Approver ") is UserRole.APPROVER
    with pytest.raises(ValueError, match="one of: viewer, preparer, approver, admin"):
        parse_role("owner")


def test_user_names_are_checked():
    assert check_user_name("ana.lopez@finance") == "ana.lopez@finance"
    for bad in ("", "-x", "a b", "x" * 65, "ana<script>"):
        with pytest.raises(ValueError):
            check_user_name(bad)


def test_the_store_adds_changes_locks_and_ends_sessions(cli):
    ledger = cli.ledger()
    try:
        user = ledger.add_user("ana", UserRole.PREPARER, hash_password(PASSWORD))
        assert user.role == "preparer" and not user.disabled and user.sessions_after is None
        with pytest.raises(UserExists):
            ledger.add_user("ana", UserRole.VIEWER, hash_password(PASSWORD))
        assert ledger.set_user_role("ana", UserRole.APPROVER).role == "approver"
        with pytest.raises(UnknownUser):
            ledger.set_user_role("bob", UserRole.ADMIN)

        now = utcnow()
        for _ in range(4):
            failed = ledger.user_login_failed("ana", max_failures=5, lock_for=timedelta(minutes=15), now=now)
            assert failed is not None and failed.locked_until is None
        locked = ledger.user_login_failed("ana", max_failures=5, lock_for=timedelta(minutes=15), now=now)
        assert locked is not None and locked.locked_until == now + timedelta(minutes=15)
        assert ledger.user_login_failed("nobody", max_failures=5, lock_for=timedelta(minutes=1)) is None

        signed_in = ledger.user_logged_in("ana", now=now)
        assert signed_in.locked_until is None and signed_in.failed_logins == 0
        assert signed_in.last_login_at == now

        disabled = ledger.set_user_disabled("ana", True)
        assert disabled.disabled and disabled.sessions_after is not None
        assert not ledger.set_user_disabled("ana", False).disabled

        changed = ledger.set_user_password("ana", hash_password("another long password"))
        assert verify_password(changed.password_hash, "another long password")
        assert changed.sessions_after == changed.password_changed_at
        assert [u.name for u in ledger.list_users()] == ["ana"]
    finally:
        ledger.dispose()


def test_user_add_reads_the_password_twice_and_stores_only_its_hash(cli):
    result = cli("user", "add", "ana", "--role", "approver", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "added console user ana (approver)" in result.output
    with sqlite3.connect(cli.db_path) as db:
        (stored,) = db.execute("SELECT password_hash FROM console_user WHERE name = 'ana'").fetchone()
        audited = db.execute("SELECT message, actor FROM audit_event WHERE subject = 'user:ana'").fetchall()
    assert verify_password(stored, PASSWORD)
    assert audited and audited[0][0] == "console user added with role approver"
    assert audited[0][1].startswith("cli")
    for row in audited:
        assert PASSWORD not in str(row)

    again = cli("user", "add", "ana", "--password-stdin", input=f"{PASSWORD}\n")
    assert again.exit_code == 2 and "already exists" in again.output


def test_user_add_refuses_a_mismatch_a_short_password_and_an_unknown_role(cli):
    mismatch = cli(
        "user", "add", "ana", input=f"{PASSWORD}\nsomething else entirely\n{PASSWORD}\n{PASSWORD}\n"
    )
    assert mismatch.exit_code == 0  # typer asks again until both entries match
    assert "do not match" in mismatch.output
    short = cli("user", "add", "bob", "--password-stdin", input="short\n")
    assert short.exit_code == 2 and "at least 12" in short.output
    role = cli("user", "add", "carl", "--role", "owner", "--password-stdin", input=f"{PASSWORD}\n")
    assert role.exit_code == 2 and "unknown role" in role.output
    ledger = cli.ledger()
    try:
        assert [u.name for u in ledger.list_users()] == ["ana"]
    finally:
        ledger.dispose()


def test_user_list_set_role_disable_enable_and_password(cli):
    assert cli("user", "list").output.startswith("no console users")
    assert cli("user", "add", "ana", "--password-stdin", input=f"{PASSWORD}\n").exit_code == 0
    assert cli("user", "set-role", "ana", "admin").exit_code == 0
    listed = cli("user", "list", "--json")
    assert '"role": "admin"' in listed.output and "password" not in listed.output
    assert cli("user", "disable", "ana").exit_code == 0
    assert '"disabled": true' in cli("user", "list", "--json").output
    assert cli("user", "enable", "ana").exit_code == 0
    changed = cli("user", "password", "ana", "--password-stdin", input="a brand new passphrase\n")
    assert changed.exit_code == 0, changed.output
    ledger = cli.ledger()
    try:
        user = ledger.get_user("ana")
        assert user is not None and verify_password(user.password_hash, "a brand new passphrase")
    finally:
        ledger.dispose()
    assert cli("user", "set-role", "nobody", "viewer").exit_code == 2
    assert cli("user", "password", "nobody", "--password-stdin", input=f"{PASSWORD}\n").exit_code == 2
