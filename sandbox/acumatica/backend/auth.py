"""Sessions and OAuth (acumatica-api.md sections 2.1, 2.2, 5.2): cookie logins, the token endpoint's
password and refresh_token grants, and the check every data request makes.

A cookie session ends after ``session_idle_seconds`` unused or at logout; a session bound to an
OAuth grant ends when its access token expires. At most ``max_sessions`` are open at once (the
API Login Limit, 429).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sandbox.acumatica import errors
from sandbox.acumatica.errors import ApiFailure

from .state import AccessToken, Grant, InstanceState, Session


class Auth(InstanceState):
    """``/entity/auth/login``, ``/entity/auth/logout``, ``/identity/connect/token`` and ``authenticate``."""

    def _purge_sessions(self) -> None:
        now = self.now()
        idle = self.config.session_idle_seconds
        for token, session in list(self.sessions.items()):
            if session.grant is not None:
                expired = session.expires is not None and session.expires <= now
            else:
                expired = now - session.last_used > idle
            if expired:
                del self.sessions[token]
                self.events["sessions_expired"] += 1

    def _open_session(
        self, branch: str | None, grant: str | None = None, expires: float | None = None
    ) -> Session:
        self._purge_sessions()
        if len(self.sessions) >= self.config.max_sessions:
            self.events["login_limit"] += 1
            raise errors.login_limit()
        now = self.now()
        session = Session(
            token=secrets.token_hex(32).upper(),
            session_id=secrets.token_hex(12),
            created=now,
            last_used=now,
            branch=branch,
            grant=grant,
            expires=expires,
        )
        self.sessions[session.token] = session
        return session

    def login(self, body: dict[str, Any]) -> Session:
        """``POST /entity/auth/login`` (section 2.1): a new session, or the real server's refusals."""
        with self._lock:
            name, password = body.get("name"), body.get("password")
            if name != self.config.username or password != self.config.password:
                self.events["login_failures"] += 1
                raise errors.http_error(500, "Invalid credentials. Please try again.")
            tenant = body.get("tenant") or body.get("company")
            if tenant and tenant != self.config.tenant:
                self.events["login_failures"] += 1
                raise errors.undefined_company()
            branch = body.get("branch") or None
            if branch is not None and branch not in self.branches:
                self.events["login_failures"] += 1
                raise errors.http_error(500, f"Branch '{branch}' cannot be found in the system.")
            session = self._open_session(branch)
            self.events["logins"] += 1
            return session

    def logout(self, cookie: str | None, bearer: str | None) -> None:
        """``POST /entity/auth/logout``: frees the session at once (204 whether or not there was one)."""
        with self._lock:
            if cookie and cookie in self.sessions:
                del self.sessions[cookie]
                self.events["logouts"] += 1
            if bearer and bearer in self.access_tokens:
                grant = self.grants.get(self.access_tokens[bearer].grant)
                if grant is not None and grant.session in self.sessions:
                    del self.sessions[grant.session]
                    self.events["logouts"] += 1

    def authenticate(self, cookie: str | None, bearer: str | None) -> Session:
        """The session behind a data request; 401 when missing or expired (section 2.1)."""
        with self._lock:
            now = self.now()
            if bearer:
                token = self.access_tokens.get(bearer)
                if token is None or token.expires <= now:
                    self.events["unauthorized"] += 1
                    raise errors.not_signed_in()
                grant = self.grants[token.grant]
                session = self.sessions.get(grant.session or "")
                if session is None:
                    session = self._open_session(None, grant.id, token.expires)
                    grant.session = session.token
                session.last_used = now
                return session
            session = self.sessions.get(cookie or "")
            if session is None:
                self.events["unauthorized"] += 1
                raise errors.not_signed_in()
            if session.grant is None and now - session.last_used > self.config.session_idle_seconds:
                del self.sessions[session.token]
                self.events["sessions_expired"] += 1
                self.events["unauthorized"] += 1
                raise errors.not_signed_in()
            session.last_used = now
            return session

    def expire_sessions(self) -> int:
        """End every session and access token now (a lifecycle knob); returns how many sessions."""
        with self._lock:
            count = len(self.sessions)
            self.sessions.clear()
            for token in self.access_tokens.values():
                token.expires = min(token.expires, self.now())
            self.events["sessions_expired"] += count
            return count

    def issue_token(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict[str, Any]]:
        """``POST /identity/connect/token``: password and refresh_token grants (section 2.2)."""
        client_id, client_secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        if client_id != self.config.client_id or client_secret != self.config.client_secret:
            return 400, {"error": "invalid_client"}
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "password":
                if (
                    form.get("username") != self.config.username
                    or form.get("password") != self.config.password
                ):
                    self.events["login_failures"] += 1
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "invalid_username_or_password",
                    }
                scope = form.get("scope", "api")
                if "api" not in scope.split():
                    return 400, {"error": "invalid_scope"}
                grant = Grant(id=str(uuid.uuid4()), scope=scope)
            elif grant_type == "refresh_token":
                grant_id = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
                if grant_id is None or grant_id not in self.grants:
                    return 400, {"error": "invalid_grant"}
                grant = self.grants[grant_id]
            else:
                return 400, {"error": "unsupported_grant_type"}
            expires = self.now() + self.config.token_lifetime_seconds
            session = self.sessions.get(grant.session or "")
            if session is None:
                try:
                    session = self._open_session(None, grant.id, expires)
                except ApiFailure:
                    return 429, {"error": "invalid_request", "error_description": "API Login Limit"}
                grant.session = session.token
            session.expires = expires
            self.grants[grant.id] = grant
            access = secrets.token_urlsafe(32)
            self.access_tokens[access] = AccessToken(grant.id, expires)
            body: dict[str, Any] = {
                "access_token": access,
                "expires_in": self.config.token_lifetime_seconds,
                "token_type": "Bearer",
                "scope": grant.scope,
            }
            if "offline_access" in grant.scope.split():
                # Each refresh returns a new refresh token; the old one stops working (section 2.2).
                refresh = secrets.token_urlsafe(32)
                self.refresh_tokens[refresh] = grant.id
                grant.refresh_token = refresh
                body["refresh_token"] = refresh
            self.events["tokens_issued"] += 1
            return 200, body
