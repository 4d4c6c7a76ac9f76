"""The Finance console's users, stored in the ledger (``console_user``): a name, a role, the argon2
hash of the password (made by :mod:`shared.passwords`), whether the user is disabled, and the
failed sign-ins that lock it for a while."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from shared.ledger.db import session_scope
from shared.ledger.errors import LedgerError
from shared.ledger.models import ConsoleUser, UserRole, utcnow

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class UserExists(LedgerError):
    """A console user of that name is already in the ledger."""


class UnknownUser(LedgerError, LookupError):
    """No console user of that name in the ledger."""


def check_user_name(name: str) -> str:
    """``name`` if it is a valid user name (letters, digits and ``. _ @ -``, at most 64), else
    ValueError saying what is allowed."""
    if not NAME_RE.match(name):
        raise ValueError(
            f"{name!r} is not a valid user name: 1 to 64 letters, digits and . _ @ -, starting with a "
            "letter or digit"
        )
    return name


def parse_role(value: str) -> UserRole:
    """The role named ``value`` (case-insensitive); ValueError listing the roles otherwise."""
    try:
        return UserRole(value.strip().lower())
    except ValueError:
        raise ValueError(f"unknown role {value!r}; one of: {', '.join(UserRole)}") from None


class UserStore:
    """The console users' part of :class:`~shared.ledger.repo.Ledger` (one transaction a method)."""

    engine: Engine

    def add_user(self, name: str, role: UserRole, password_hash: str) -> ConsoleUser:
        """Store a new user; :class:`UserExists` if the name is taken."""
        check_user_name(name)
        now = utcnow()
        try:
            with session_scope(self.engine) as session:
                if session.exec(select(ConsoleUser.id).where(ConsoleUser.name == name)).first() is not None:
                    raise UserExists(f"a console user named {name!r} already exists")
                user = ConsoleUser(
                    name=name,
                    role=role.value,
                    password_hash=password_hash,
                    disabled=False,
                    failed_logins=0,
                    password_changed_at=now,
                    created_at=now,
                    updated_at=now,
                )
                session.add(user)
                session.flush()
                return user
        except IntegrityError:
            raise UserExists(f"a console user named {name!r} already exists") from None

    def get_user(self, name: str) -> ConsoleUser | None:
        with session_scope(self.engine, read_only=True) as session:
            return session.exec(select(ConsoleUser).where(ConsoleUser.name == name)).first()

    def list_users(self) -> list[ConsoleUser]:
        """Every console user, by name."""
        with session_scope(self.engine, read_only=True) as session:
            return list(session.exec(select(ConsoleUser).order_by(col(ConsoleUser.name))).all())

    def _change_user(self, name: str, **values: object) -> ConsoleUser:
        with session_scope(self.engine) as session:
            updated = session.execute(
                sa.update(ConsoleUser)
                .where(col(ConsoleUser.name) == name)
                .values(updated_at=utcnow(), **values)
                .execution_options(synchronize_session=False)
            )
            if not getattr(updated, "rowcount", 0):
                raise UnknownUser(f"no console user named {name!r}; add one with `ledgerbridge user add`")
            return session.exec(select(ConsoleUser).where(ConsoleUser.name == name)).one()

    def set_user_role(self, name: str, role: UserRole) -> ConsoleUser:
        return self._change_user(name, role=role.value)

    def set_user_disabled(self, name: str, disabled: bool) -> ConsoleUser:
        """Disable (ending the user's sessions) or enable a user."""
        if disabled:
            return self._change_user(name, disabled=True, sessions_after=utcnow())
        return self._change_user(name, disabled=False)

    def set_user_password(self, name: str, password_hash: str) -> ConsoleUser:
        """A new password hash; clears the failed sign-ins and any lock, and ends the user's
        sessions."""
        now = utcnow()
        return self._change_user(
            name,
            password_hash=password_hash,
            password_changed_at=now,
            sessions_after=now,
            failed_logins=0,
            locked_until=None,
        )

    def end_user_sessions(self, name: str, *, now: datetime | None = None) -> ConsoleUser:
        """Sessions of ``name`` issued before ``now`` are no longer accepted (signing out)."""
        return self._change_user(name, sessions_after=now or utcnow())

    def user_login_failed(
        self, name: str, *, max_failures: int, lock_for: timedelta, now: datetime | None = None
    ) -> ConsoleUser | None:
        """Count a wrong password for ``name`` (None when there is no such user); the
        ``max_failures``-th in a row locks sign-in until ``lock_for`` from ``now``."""
        now = now or utcnow()
        with session_scope(self.engine) as session:
            user = session.exec(select(ConsoleUser).where(ConsoleUser.name == name).with_for_update()).first()
            if user is None:
                return None
            user.failed_logins += 1
            if user.failed_logins >= max_failures:
                user.locked_until = now + lock_for
                user.failed_logins = 0
            user.updated_at = now
            session.add(user)
            session.flush()
            return user

    def user_logged_in(
        self, name: str, *, new_hash: str | None = None, now: datetime | None = None
    ) -> ConsoleUser:
        """Record a successful sign-in (clears the failures and the lock); ``new_hash``: the same
        password hashed with today's parameters."""
        now = now or utcnow()
        values: dict[str, object] = {"last_login_at": now, "failed_logins": 0, "locked_until": None}
        if new_hash is not None:
            values["password_hash"] = new_hash
        return self._change_user(name, **values)
