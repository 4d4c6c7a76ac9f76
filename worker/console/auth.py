"""Who is asking: signed session cookies, CSRF tokens, password sign-in with a lockout, roles.

**Sessions.** The cookie holds the user name, when the session was issued, when it was last used
and a random CSRF token, signed with ``LEDGERBRIDGE_CONSOLE_SECRET`` (itsdangerous, HMAC-SHA1 over
a salt of its own): it cannot be forged or altered, and a cookie signed with another secret is
refused. It is ``HttpOnly``, ``SameSite=Strict``, ``Secure`` (unless
``LEDGERBRIDGE_CONSOLE_INSECURE_COOKIES``) and scoped to ``/console``. A session unused for
``LEDGERBRIDGE_CONSOLE_SESSION_MINUTES`` is over, and none lives longer than
:data:`MAX_SESSION` whatever its use. Every request reads the user again from the ledger: a
disabled user, a changed role, a new password or a sign-out (``sessions_after``) counts at once.

**CSRF.** Every form carries the session's token in a hidden ``csrf_token`` field (a synchroniser
token), compared with :func:`hmac.compare_digest`; the sign-in form, before there is a session,
uses a short-lived signed cookie of its own holding the token.

**Sign-in.** A wrong password counts against the user; :data:`MAX_FAILURES` in a row lock it for
:data:`LOCK_FOR`. An unknown name costs the same argon2 verification as a known one.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer

from shared.ledger.models import ConsoleUser, UserRole
from shared.ledger.repo import Ledger
from shared.passwords import dummy_verify, hash_password, needs_rehash, verify_password

SESSION_COOKIE = "lbconsole_session"
LOGIN_COOKIE = "lbconsole_login"
COOKIE_PATH = "/console"
MAX_SESSION = timedelta(hours=24)
LOGIN_FORM_SECONDS = 3600
MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)


@dataclass(frozen=True)
class Session:
    user: str
    issued: float
    seen: float
    csrf: str

    def touched(self, now: float) -> Session:
        return Session(self.user, self.issued, now, self.csrf)


def new_session(user: str, now: float) -> Session:
    return Session(user=user, issued=now, seen=now, csrf=secrets.token_urlsafe(32))


class Signer:
    """Signs and reads the session and sign-in cookies with the console secret."""

    def __init__(self, secret: str) -> None:
        self._sessions = URLSafeTimedSerializer(secret, salt="ledgerbridge.console.session")
        self._login = URLSafeTimedSerializer(secret, salt="ledgerbridge.console.login")

    def dump(self, session: Session) -> str:
        return self._sessions.dumps([session.user, session.issued, session.seen, session.csrf])

    def load(self, token: str | None, *, idle: timedelta, now: float) -> Session | None:
        """The session in ``token``, or None: missing, forged, signed with another secret,
        malformed, idle longer than ``idle`` or older than :data:`MAX_SESSION`."""
        if not token:
            return None
        try:
            data = self._sessions.loads(token, max_age=int(max(idle, MAX_SESSION).total_seconds()))
        except BadSignature:
            return None
        if not (isinstance(data, list) and len(data) == 4):
            return None
        user, issued, seen, csrf = data
        if not (
            isinstance(user, str)
            and isinstance(issued, int | float)
            and isinstance(seen, int | float)
            and isinstance(csrf, str)
        ):
            return None
        if now - float(seen) > idle.total_seconds() or now - float(issued) > MAX_SESSION.total_seconds():
            return None
        return Session(user, float(issued), float(seen), csrf)

    def login_cookie(self) -> tuple[str, str]:
        """(cookie value, token) for a sign-in form."""
        token = secrets.token_urlsafe(32)
        return self._login.dumps(token), token

    def login_token(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            token = self._login.loads(cookie, max_age=LOGIN_FORM_SECONDS)
        except BadSignature:
            return None
        return token if isinstance(token, str) else None


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Whether a form's CSRF token is the expected one (constant time; False when either is missing)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def role_of(user: ConsoleUser) -> UserRole:
    try:
        return UserRole(user.role)
    except ValueError:
        return UserRole.VIEWER


def session_user(ledger: Ledger, session: Session) -> ConsoleUser | None:
    """The session's user as the ledger has it now; None when it is gone, disabled, or its
    sessions were ended after this one was issued (sign-out, new password, disable)."""
    user = ledger.get_user(session.user)
    if user is None or user.disabled:
        return None
    if user.sessions_after is not None and session.issued <= user.sessions_after.timestamp():
        return None
    return user


def trusted_user(ledger: Ledger, name: str | None) -> ConsoleUser | None:
    """The enabled user a trusted proxy's header names (None: no header or no such user)."""
    if not name or not name.strip():
        return None
    user = ledger.get_user(name.strip())
    return user if user is not None and not user.disabled else None


@dataclass(frozen=True)
class SignIn:
    """A sign-in attempt's outcome: ``user`` when it succeeded, else ``why`` (for the audit trail,
    never shown to the person: they see one message for every failure)."""

    user: ConsoleUser | None
    why: str


def sign_in(ledger: Ledger, name: str, password: str, now: datetime | None = None) -> SignIn:
    """Check ``name`` and ``password``; count a failure, or record the sign-in (re-hashing a
    password hashed with older parameters)."""
    now = now or datetime.now(UTC)
    user = ledger.get_user(name) if name else None
    if user is None:
        dummy_verify(password)
        return SignIn(None, "unknown user")
    if user.locked_until is not None and user.locked_until > now:
        dummy_verify(password)
        return SignIn(
            None, f"locked after {MAX_FAILURES} wrong passwords until {user.locked_until:%H:%M:%S} UTC"
        )
    if not verify_password(user.password_hash, password):
        failed = ledger.user_login_failed(name, max_failures=MAX_FAILURES, lock_for=LOCK_FOR, now=now)
        locked = failed is not None and failed.locked_until is not None and failed.locked_until > now
        return SignIn(None, "wrong password" + (f"; locked for {LOCK_FOR}" if locked else ""))
    if user.disabled:
        return SignIn(None, "user disabled")
    new_hash = hash_password(password) if needs_rehash(user.password_hash) else None
    return SignIn(ledger.user_logged_in(name, new_hash=new_hash, now=now), "")
