"""``ledgerbridge user add|list|set-role|disable|enable|password``: the Finance console's users.

Users are local to the ledger (``console_user``); only the argon2 hash of a password is stored.
A password is read from a hidden prompt (asked twice) or, for scripts, from the first line of
standard input with ``--password-stdin``; never from an option, so it stays out of the shell
history and the process list. Roles, lowest first: viewer (reads everything), preparer (+ retries
parked and failed records), approver (+ approves or rejects closes), admin (+ everything).
A change of role, a disabled user or a new password takes effect on the user's next request.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from cli.common import ledger_at_head
from cli.output import fail, out, print_json, stored_time, table, usage_errors

if TYPE_CHECKING:
    from shared.ledger.models import UserRole

ROLES_HELP = "viewer, preparer, approver or admin"
PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from the first line of standard input."),
]


def register(app: typer.Typer) -> None:
    """Add the ``user`` group to the ``ledgerbridge`` command."""
    group = typer.Typer(no_args_is_help=True, help="Users of the Finance console (web, /console).")
    group.command("add")(user_add)
    group.command("list")(user_list)
    group.command("set-role")(user_set_role)
    group.command("disable")(user_disable)
    group.command("enable")(user_enable)
    group.command("password")(user_password)
    app.add_typer(group, name="user")


def _role(value: str) -> UserRole:
    from shared.ledger.users import parse_role

    try:
        return parse_role(value)
    except ValueError as exc:
        raise fail(str(exc), 2) from None


def read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or a hidden prompt asked twice; checked for
    length (exit 2 with the reason)."""
    from shared.passwords import WeakPassword, check_strength

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        check_strength(password)
    except WeakPassword as exc:
        raise fail(str(exc), 2) from None
    return password


def user_add(
    name: Annotated[str, typer.Argument(help="The user name people sign in with.")],
    role: Annotated[str, typer.Option("--role", "-r", help=ROLES_HELP)] = "viewer",
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a console user with a role; the password is asked for twice (or read with
    --password-stdin)."""
    from shared.ledger.users import check_user_name
    from shared.passwords import hash_password

    chosen = _role(role)
    try:
        check_user_name(name)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    with usage_errors():
        ledger = ledger_at_head()
        if ledger.get_user(name) is not None:
            raise fail(f"a console user named {name!r} already exists (change it with set-role, password)", 2)
        password = read_password(password_stdin)
        ledger.add_user(name, chosen, hash_password(password))
        ledger.note(f"user:{name}", f"console user added with role {chosen.value}", actor=_operator())
    out().print(f"added console user {escape(name)} ({chosen.value})")


def user_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the console users with their role, state and last sign-in (never a password hash)."""
    with usage_errors():
        users = ledger_at_head().list_users()
    rows = [
        {
            "name": u.name,
            "role": u.role,
            "disabled": u.disabled,
            "locked_until": u.locked_until.isoformat() if u.locked_until else None,
            "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
            "created_at": u.created_at.isoformat(),
        }
        for u in users
    ]
    if as_json:
        print_json({"users": rows})
        return
    if not users:
        out().print("no console users; add one with `ledgerbridge user add NAME --role admin`")
        return
    shown = table("console users", ("name", "role", "state", "last sign-in", "added"))
    for u in users:
        state = "disabled" if u.disabled else "active"
        shown.add_row(escape(u.name), u.role, state, stored_time(u.last_login_at), stored_time(u.created_at))
    out().print(shown)


def user_set_role(
    name: Annotated[str, typer.Argument(help="The user.")],
    role: Annotated[str, typer.Argument(help=ROLES_HELP)],
) -> None:
    """Change a user's role (effective on the user's next request)."""
    from shared.ledger.users import UnknownUser

    chosen = _role(role)
    with usage_errors():
        ledger = ledger_at_head()
        try:
            ledger.set_user_role(name, chosen)
        except UnknownUser as exc:
            raise fail(str(exc), 2) from None
        ledger.note(f"user:{name}", f"role set to {chosen.value}", actor=_operator())
    out().print(f"{escape(name)} is now {chosen.value}")


def _set_disabled(name: str, disabled: bool) -> None:
    from shared.ledger.users import UnknownUser

    with usage_errors():
        ledger = ledger_at_head()
        try:
            ledger.set_user_disabled(name, disabled)
        except UnknownUser as exc:
            raise fail(str(exc), 2) from None
        word = "disabled" if disabled else "enabled"
        ledger.note(f"user:{name}", f"console user {word}", actor=_operator())
    out().print(f"{escape(name)} is {'disabled: their sessions end at once' if disabled else 'enabled'}")


def user_disable(name: Annotated[str, typer.Argument(help="The user.")]) -> None:
    """Disable a user: they cannot sign in, and their open sessions end at their next request."""
    _set_disabled(name, True)


def user_enable(name: Annotated[str, typer.Argument(help="The user.")]) -> None:
    """Enable a disabled user again."""
    _set_disabled(name, False)


def user_password(
    name: Annotated[str, typer.Argument(help="The user.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a user's password (asked for twice, or read with --password-stdin); clears a lock
    after failed sign-ins and ends the user's open sessions."""
    from shared.ledger.users import UnknownUser
    from shared.passwords import hash_password

    with usage_errors():
        ledger = ledger_at_head()
        if ledger.get_user(name) is None:
            raise fail(f"no console user named {name!r}; add one with `ledgerbridge user add`", 2)
        password = read_password(password_stdin)
        try:
            ledger.set_user_password(name, hash_password(password))
        except UnknownUser as exc:
            raise fail(str(exc), 2) from None
        ledger.note(f"user:{name}", "password changed", actor=_operator())
    out().print(f"password of {escape(name)} changed")


def _operator() -> str:
    """Who ran the command, for the audit trail: ``cli:<os user>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli"
