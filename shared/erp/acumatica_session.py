"""One Acumatica API session per connection, shared by every worker through Redis.

Acumatica counts API sessions against the licence and a per-user cap that may be 1; a leaked
session blocks sign-in for 10 minutes (acumatica-api.md sections 2.1 and 5.2, pitfall 10). So the
fleet shares one session:

* Cookie mode: ``POST /entity/auth/login`` answers 204 with cookies, treated as an opaque jar.
  The jar is stored under ``ledgerbridge:{conn}:acumatica:session`` (sealed with the cipher of
  ``LEDGERBRIDGE_SECRET_KEY`` when one is given, :mod:`shared.cipher`) with a TTL below the
  server's 10-minute idle timeout, extended as it is used; a ``Set-Cookie`` on any answer updates
  the shared jar.
* OAuth mode (``client_id`` set, section 2.2): a password or refresh-token grant at
  ``/identity/connect/token``; the access token is stored under the same key until shortly
  before ``expires_in``.

Refresh tokens rotate: each refresh answers with a new refresh token and the one it was given
stops working at once (section 2.2, docs/vendor-notes.md). The newest one is kept in Redis and,
because Redis is volatile (a restart or a flush empties it), in a :class:`DurableRefreshToken`
(the ledger, wired in ``shared.ports``). A sign-in tries Redis's copy, then the durable copy,
then the configured token (``LEDGERBRIDGE_ACUMATICA_REFRESH_TOKEN`` or the stored connection's),
re-reading them after each refusal and trying each token once; then the password grant when a
username is configured. So a refused copy (another process rotated it meanwhile, or an engineer
configured a freshly issued token) is not yet a credentials problem.

When the token endpoint answers with a new refresh token, the writes go in this order:

1. the durable copy, in one committed transaction, before anything else is done with the answer;
2. Redis's copy;
3. only then the access token (stored for the fleet and used).

The previous token died when the server answered, so the new one is the only way back in without
a password. A crash can lose it only between the answer arriving and the commit of step 1 (no
request is made in between); no order of ours can close that window, since the server has
rotated already. Durable first also keeps the durable copy from moving backwards: no other process
can hold the new token before step 1 has committed, so none can refresh it and persist the
successor first (Redis's copy may lag for a moment; a refused copy is followed by the durable one,
as above). If step 1 fails, the token still goes to Redis (its only copy) and the sign-in fails as
:class:`~shared.errors.Transient`; the retry refreshes and persists again.

Login is single-flight: under a Redis lock a process re-reads the key and logs in only if it is
still empty, so N workers make one login. After a 401 the caller hands back the failed session;
it is deleted only if it is still the stored one (compare-and-delete), and the next caller logs
in again. A process logs out only the session it created (or on an explicit :meth:`logout`), and
always deletes the shared copy first so nobody keeps using a dead session.

This is deliberately not an ``httpx.Auth`` flow: the login is itself a throttled, audited API
request (it takes a licence queue slot), which the client's sender provides.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal, Protocol

import httpx
from cryptography.fernet import InvalidToken, MultiFernet
from redis.exceptions import LockError

from shared.connections import AcumaticaTarget
from shared.coordination.limits import acquire_lock
from shared.coordination.scripts import COMPARE_AND_DELETE, COMPARE_AND_EXPIRE, COMPARE_AND_SET
from shared.erp.acumatica_wire import exception_text
from shared.errors import AuthFailed, RateLimited, Transient

log = logging.getLogger("ledgerbridge.acumatica.session")

API = "acumatica"
LOGIN_PATH = "/entity/auth/login"
LOGOUT_PATH = "/entity/auth/logout"
TOKEN_PATH = "/identity/connect/token"  # noqa: S105 - a URL path, not a secret
CREDENTIALS = (
    "LEDGERBRIDGE_ACUMATICA_USERNAME / LEDGERBRIDGE_ACUMATICA_PASSWORD / LEDGERBRIDGE_ACUMATICA_TENANT"
)
OAUTH_CREDENTIALS = "LEDGERBRIDGE_ACUMATICA_CLIENT_ID / LEDGERBRIDGE_ACUMATICA_CLIENT_SECRET"
REFRESH_CREDENTIALS = "LEDGERBRIDGE_ACUMATICA_REFRESH_TOKEN / " + OAUTH_CREDENTIALS
# Sessions free themselves after 10 idle minutes (section 2.1); a stored jar lives 5 unused.
DEFAULT_SESSION_TTL = 300.0
# The licence sign-in cap frees only as sessions end: a later retry, not a quick one.
LOGIN_LIMIT_WAIT = 60.0
TOKEN_MARGIN = 60.0
REFRESH_TOKEN_TTL = 30 * 24 * 3600  # the default refresh-token lifetime (section 2.2)
# How many refresh tokens one sign-in tries at most: Redis's, the durable one, the configured one.
MAX_REFRESH_TOKENS = 3

Stored = bytes | str | None  # the session key's value as Redis returns it


class NotRead:
    """The caller has not read the session key (:meth:`SessionStore.current` reads it)."""


NOT_READ: Final = NotRead()

# The client's sender: one throttled, audited request with network retries only.
Send = Callable[[httpx.Request], httpx.Response]


def session_key(connection: str) -> str:
    return f"ledgerbridge:{connection}:acumatica:session"


def refresh_token_key(connection: str) -> str:
    return f"ledgerbridge:{connection}:acumatica:refresh_token"


class DurableRefreshToken(Protocol):
    """The connection's newest OAuth refresh token where it outlives Redis (see module docstring).

    ``save`` returns once the token is durably stored (committed) and raises otherwise; ``load``
    answers None when there is none (or none this process can read)."""

    def load(self) -> str | None: ...

    def save(self, token: str) -> None: ...


@dataclass(frozen=True)
class Session:
    """A signed-in session as stored in Redis. ``raw`` is the stored value (compare-and-set)."""

    sid: str
    kind: Literal["cookie", "bearer"]
    owner: str
    cookies: Mapping[str, str] = field(default_factory=dict)
    access_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    raw: str = field(default="", repr=False, compare=False)

    def headers(self) -> dict[str, str]:
        if self.kind == "bearer":
            return {"Authorization": f"Bearer {self.access_token}"}
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def to_json(self) -> str:
        return json.dumps(
            {
                "sid": self.sid,
                "kind": self.kind,
                "owner": self.owner,
                "cookies": dict(self.cookies),
                "access_token": self.access_token,
                "expires_at": self.expires_at,
            },
            sort_keys=True,
        )


def parse_set_cookies(headers: httpx.Headers, *, now: datetime | None = None) -> dict[str, str | None]:
    """``name -> value`` for each ``Set-Cookie``; None for a cookie being deleted (empty value,
    ``Max-Age=0`` or an ``Expires`` in the past). Attributes are otherwise ignored: the jar is
    opaque and replayed whole (section 2.1)."""
    now = now or datetime.now(UTC)
    out: dict[str, str | None] = {}
    for header in headers.get_list("set-cookie"):
        first, *attrs = header.split(";")
        name, sep, value = first.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            continue
        deleted = value == ""
        for attr in attrs:
            key, _, arg = attr.strip().partition("=")
            if key.lower() == "max-age" and arg.strip().lstrip("-").isdigit() and int(arg) <= 0:
                deleted = True
            elif key.lower() == "expires":
                try:
                    expires = parsedate_to_datetime(arg.strip())
                except (TypeError, ValueError):
                    continue
                if expires.tzinfo is None:
                    expires = expires.replace(tzinfo=UTC)
                deleted = deleted or expires <= now
        out[name] = None if deleted else value
    return out


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class SessionManager:
    """Gets, shares, renews and ends the connection's Acumatica session (see module docstring)."""

    def __init__(
        self,
        target: AcumaticaTarget,
        *,
        connection: str,
        redis: Any,
        send: Send,
        clock: Callable[[], float] = time.time,
        cipher: MultiFernet | None = None,
        refresh_tokens: DurableRefreshToken | None = None,
        session_ttl: float = DEFAULT_SESSION_TTL,
        lock_timeout: float = 120.0,
        lock_wait: float = 130.0,
    ) -> None:
        self._target = target
        self._redis = redis
        self._send = send
        self._clock = clock
        self._cipher = cipher
        self._durable = refresh_tokens
        self._ttl = session_ttl
        self._lock_timeout = lock_timeout
        self._lock_wait = lock_wait
        self.key = session_key(connection)
        self._lock_key = self.key + ":lock"
        self._refresh_key = refresh_token_key(connection)
        self._base = target.url.rstrip("/")
        self._owner = uuid.uuid4().hex  # this process's sessions
        self._own: Session | None = None  # the last session this process created
        self._touched: dict[str, float] = {}
        self._last_loaded: Session | None = None  # the last session read from Redis, decrypted
        self._discard = redis.register_script(COMPARE_AND_DELETE)
        self._replace = redis.register_script(COMPARE_AND_SET)
        self._touch = redis.register_script(COMPARE_AND_EXPIRE)
        self.logins = 0  # sign-ins (cookie logins or token grants) this process made

    @property
    def owner(self) -> str:
        """This process's mark on the sessions it signs in (:attr:`Session.owner`)."""
        return self._owner

    @property
    def oauth(self) -> bool:
        return bool(self._target.client_id)

    # -- getting a session -----------------------------------------------------------------------

    def current(self, *, failed: Session | None = None, stored: Stored | NotRead = NOT_READ) -> Session:
        """The shared session, signing in (once for the fleet) when there is none usable.
        ``stored``: the value of :attr:`key` the caller has just read (None: no session stored)."""
        session = self._load() if isinstance(stored, NotRead) else self._decode(stored)
        if self._usable(session, failed):
            assert session is not None
            return session
        lock = self._redis.lock(self._lock_key, timeout=self._lock_timeout, sleep=0.05)
        if not acquire_lock(lock, self._redis, self._lock_key, self._lock_wait):
            raise Transient("another process has been signing in to Acumatica for too long", api=API)
        try:
            session = self._load()  # double-check: another process may have signed in meanwhile
            if self._usable(session, failed):
                assert session is not None
                return session
            session = self._token_login() if self.oauth else self._cookie_login()
            self._own = session
            self.logins += 1
            return session
        finally:
            try:
                lock.release()
            except LockError:
                log.warning("the Acumatica sign-in lock expired before it was released")

    def renew(self, failed: Session) -> Session:
        """After a 401: forget ``failed`` (only if still stored) and sign in again."""
        log.info("acumatica answered 401; signing in again once")
        self._discard(keys=[self.key], args=[failed.raw])
        return self.current(failed=failed)

    def absorb(self, session: Session, response: httpx.Response) -> Session:
        """Fold a response's ``Set-Cookie`` changes into the shared jar; keep the stored copy
        alive while it is used (at most one Redis write per 30 seconds per session)."""
        if session.kind == "cookie" and "set-cookie" in response.headers:
            cookies = dict(session.cookies)
            for name, value in parse_set_cookies(response.headers).items():
                if value is None:
                    cookies.pop(name, None)
                else:
                    cookies[name] = value
            if cookies != dict(session.cookies):
                updated = self._sealed(replace(session, cookies=cookies))
                if self._replace(keys=[self.key], args=[session.raw, updated.raw, int(self._ttl)]):
                    self._touched[updated.raw] = self._clock()
                if self._own is not None and self._own.sid == session.sid:
                    self._own = updated
                return updated
        if session.kind == "cookie":
            now = self._clock()
            if now - self._touched.get(session.raw, 0.0) > 30.0:
                self._touch(keys=[self.key], args=[session.raw, int(self._ttl)])
                self._touched = {session.raw: now}
        return session

    # -- ending a session ------------------------------------------------------------------------

    def close(self) -> None:
        """Log out the session this process created, if any (never another process's)."""
        own, self._own = self._own, None
        if own is None:
            return
        stored = self._load()
        if stored is not None and stored.sid == own.sid:
            own = stored  # the freshest jar of our session
            self._discard(keys=[self.key], args=[stored.raw])
        self._post_logout(own)

    def logout(self) -> None:
        """Log out the shared session whoever created it (an engineer's explicit request)."""
        stored = self._load()
        if stored is not None:
            self._discard(keys=[self.key], args=[stored.raw])
            self._post_logout(stored)
        if self._own is not None and (stored is None or self._own.sid != stored.sid):
            self._post_logout(self._own)
        self._own = None

    def _post_logout(self, session: Session) -> None:
        # An explicit empty body: IIS answers 411 to a POST without Content-Length (section 2.1).
        request = httpx.Request("POST", self._base + LOGOUT_PATH, headers=session.headers(), content=b"")
        try:
            response = self._send(request)
        except Exception as exc:  # a failed logout must not hide the caller's own error
            log.warning("acumatica logout failed: %s", exc)
            return
        if response.status_code not in (200, 204):
            log.warning("acumatica logout answered %s", response.status_code)

    # -- cookie login ----------------------------------------------------------------------------

    def _cookie_login(self) -> Session:
        target = self._target
        if not target.username or not target.password:
            raise AuthFailed(f"no Acumatica credentials: set {CREDENTIALS}", api=API)
        body = {"name": target.username, "password": target.password}
        if target.tenant:
            body["tenant"] = target.tenant
        if target.branch:
            body["branch"] = target.branch
        request = httpx.Request(
            "POST",
            self._base + LOGIN_PATH,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            content=json.dumps(body).encode(),
        )
        response = self._send(request)
        if response.status_code in (200, 204):
            cookies = {k: v for k, v in parse_set_cookies(response.headers).items() if v is not None}
            if not cookies:
                raise AuthFailed("Acumatica accepted the login but set no session cookie", **_where(response))
            session = self._sealed(
                Session(sid=uuid.uuid4().hex, kind="cookie", owner=self._owner, cookies=cookies)
            )
            self._redis.set(self.key, session.raw, ex=int(self._ttl))
            self._touched = {session.raw: self._clock()}
            return session
        raise self._login_error(response, CREDENTIALS)

    # -- OAuth -----------------------------------------------------------------------------------

    def _token_login(self) -> Session:
        target = self._target
        tried: set[str] = set()
        refused: httpx.Response | None = None
        while len(tried) < MAX_REFRESH_TOKENS and (refresh_token := self._refresh_token(tried)):
            tried.add(refresh_token)
            response = self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})
            body = _json(response)
            if response.status_code == 200:
                return self._token_session(response, body)
            if not (isinstance(body, dict) and body.get("error") == "invalid_grant"):
                raise self._login_error(response, REFRESH_CREDENTIALS)
            log.warning("acumatica refused a refresh token (spent or revoked)")
            refused = response
        if refused is not None:
            if not target.username:
                raise self._login_error(refused, REFRESH_CREDENTIALS)
            log.warning("no refresh token was accepted; falling back to the password grant")
        if not target.username or not target.password:
            raise AuthFailed(
                "no usable Acumatica refresh token and no username/password: set "
                "LEDGERBRIDGE_ACUMATICA_REFRESH_TOKEN or LEDGERBRIDGE_ACUMATICA_USERNAME/PASSWORD",
                api=API,
            )
        response = self._token_request(
            {
                "grant_type": "password",
                "username": target.username,
                "password": target.password,
                "scope": "api offline_access",
            }
        )
        if response.status_code == 200:
            return self._token_session(response, _json(response))
        raise self._login_error(response, OAUTH_CREDENTIALS + " / " + CREDENTIALS)

    def _token_request(self, form: dict[str, str]) -> httpx.Response:
        form = {**form, "client_id": self._target.client_id or ""}
        if self._target.client_secret:
            form["client_secret"] = self._target.client_secret
        request = httpx.Request(
            "POST", self._base + TOKEN_PATH, headers={"Accept": "application/json"}, data=form
        )
        return self._send(request)

    def _token_session(self, response: httpx.Response, body: Any) -> Session:
        try:
            access_token = str(body["access_token"])
            expires_in = float(body.get("expires_in") or 3600)
        except (KeyError, TypeError, ValueError):
            raise AuthFailed(
                "Acumatica's token endpoint returned no access_token", **_where(response)
            ) from None
        if refresh := body.get("refresh_token"):
            self._store_refresh_token(str(refresh))
        ttl = max(1.0, expires_in - TOKEN_MARGIN)
        session = self._sealed(
            Session(
                sid=uuid.uuid4().hex,
                kind="bearer",
                owner=self._owner,
                access_token=access_token,
                expires_at=self._clock() + ttl,
            )
        )
        self._redis.set(self.key, session.raw, ex=max(1, int(ttl)))
        return session

    def _refresh_token(self, tried: set[str]) -> str | None:
        """The first refresh token not yet ``tried``: Redis's copy, the durable one, the configured
        one (each read afresh: another process may have rotated it meanwhile)."""
        raw = self._redis.get(self._refresh_key)
        cached = None if raw is None else self._open(raw)
        if cached and cached not in tried:
            return cached
        durable = self._durable.load() if self._durable is not None else None
        if durable and durable not in tried:
            return durable
        configured = self._target.refresh_token
        return configured if configured and configured not in tried else None

    def _store_refresh_token(self, token: str) -> None:
        """The durable copy first, then Redis's (the order and its reasons: module docstring)."""
        failure: Exception | None = None
        if self._durable is not None:
            try:
                self._durable.save(token)
            except Exception as exc:  # re-raised below, once Redis holds the only copy left
                failure = exc
        self._redis.set(self._refresh_key, self._seal(token), ex=REFRESH_TOKEN_TTL)
        if failure is not None:
            log.error("the new Acumatica refresh token could not be stored durably: %s", failure)
            raise Transient(
                "Acumatica rotated the refresh token but the new one could not be stored durably "
                f"({type(failure).__name__}); it is kept in Redis until the next sign-in stores it",
                api=API,
            ) from failure

    # -- errors ----------------------------------------------------------------------------------

    def _login_error(self, response: httpx.Response, variables: str) -> Exception:
        """Sign-in refusals (section 2.1/2.2/5.1): the session cap -> RateLimited, a server fault
        -> Transient, anything else -> AuthFailed naming the variables to check."""
        body = _json(response)
        text = exception_text(body) or (response.text[:500] if response.text else "")
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            text = f"{body['error']}: {body.get('error_description', '')}"
        status = response.status_code
        location = response.headers.get("location", "")
        if status == 429 or "API Login Limit" in text or (300 <= status < 400 and "concurrent" in location):
            return RateLimited(
                "Acumatica's API sign-in limit is reached (sessions free after 10 idle minutes)",
                retry_after=LOGIN_LIMIT_WAIT,
                **_where(response),
            )
        credential_fault = any(
            mark in text
            for mark in (
                "Invalid credentials",
                "locked out",
                "disabled",
                "PXUndefinedCompany",
                "change your password",
            )
        )
        if status >= 500 and not credential_fault:
            return Transient(f"Acumatica sign-in failed: {text or status}", **_where(response))
        return AuthFailed(
            f"Acumatica refused the sign-in ({text or status}); check {variables}", **_where(response)
        )

    # -- storage ---------------------------------------------------------------------------------

    def _usable(self, session: Session | None, failed: Session | None) -> bool:
        if session is None or (failed is not None and session.sid == failed.sid):
            return False
        return session.expires_at is None or session.expires_at > self._clock()

    def _sealed(self, session: Session) -> Session:
        return replace(session, raw=self._seal(session.to_json()))

    def _seal(self, text: str) -> str:
        return self._cipher.encrypt(text.encode()).decode() if self._cipher else text

    def _open(self, raw: bytes | str) -> str | None:
        text = raw.decode() if isinstance(raw, bytes) else raw
        if self._cipher is None:
            return text
        try:
            return self._cipher.decrypt(text.encode()).decode()
        except InvalidToken:
            return None  # sealed with a key no longer listed: ignore it, it will be replaced

    def _load(self) -> Session | None:
        return self._decode(self._redis.get(self.key))

    def _decode(self, raw: Stored) -> Session | None:
        if raw is None:
            return None
        last = self._last_loaded
        if last is not None and last.raw == (raw.decode() if isinstance(raw, bytes) else raw):
            return last  # unchanged since the last read: no decryption, no parsing
        session = self._parse(raw)
        self._last_loaded = session
        return session

    def _parse(self, raw: bytes | str) -> Session | None:
        text = self._open(raw)
        if text is None:
            return None
        try:
            data = json.loads(text)
            return Session(
                sid=str(data["sid"]),
                kind=data["kind"],
                owner=str(data["owner"]),
                cookies=dict(data.get("cookies") or {}),
                access_token=data.get("access_token"),
                expires_at=data.get("expires_at"),
                raw=raw.decode() if isinstance(raw, bytes) else raw,
            )
        except (ValueError, KeyError, TypeError):
            return None


def _where(response: httpx.Response) -> dict[str, Any]:
    return {
        "api": API,
        "status": response.status_code,
        "method": response.request.method,
        "url": str(response.request.url),
    }
