"""OAuth (zuora-api.md section 1): the client-credentials grant and the bearer tokens it mints.

``TENANT_ID`` is the tenant the tokens are for; the gateway also keys Idempotency-Keys by it.
"""

from __future__ import annotations

import secrets
from typing import Any

from sandbox.zuora.errors import OAuthError
from sandbox.zuora.seed import SANDBOX_USER

from .state import TenantState

DEFAULT_CLIENT_ID = "00000000-0000-4000-8000-00000000cafe"
# <= 42 chars (section 1.1); '+', '/' and '=' catch clients that do not form-encode the secret.
DEFAULT_CLIENT_SECRET = "ledgerbridge/sandbox+secret=local"  # noqa: S105 - a public sandbox credential
TENANT_ID = "9999"


class Auth(TenantState):
    """``POST /oauth/token`` and the token check every other route makes."""

    def issue_token(
        self, client_id: str | None, client_secret: str | None, grant_type: str | None
    ) -> dict[str, Any]:
        """Validate a client-credentials request and mint a bearer token."""
        if not client_id or not client_secret or not grant_type:
            raise OAuthError(400, "invalid_request", "client_id, client_secret and grant_type are required")
        if grant_type != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "only client_credentials is supported")
        if len(client_id) != 36 or len(client_secret) > 42:
            raise OAuthError(400, "invalid_request", "client_id must be 36 chars, client_secret at most 42")
        if not (
            secrets.compare_digest(client_id, self.client_id)
            and secrets.compare_digest(client_secret, self.client_secret)
        ):
            raise OAuthError(401, "invalid_client", "Bad client credentials")
        with self._lock:
            token = secrets.token_hex(16)
            lifetime = self._config.token_lifetime_seconds
            self._tokens[token] = self.now() + lifetime
            return {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": lifetime,
                "scope": f"user.{SANDBOX_USER} entity.00000000-0000-4000-8000-000000000001 "
                f"platform.write service.events.read tenant.{TENANT_ID}",
                "jti": token[:-1] + ("0" if token[-1] != "0" else "1"),
            }

    def authenticate(self, token: str) -> bool:
        """True while ``token`` is known and not expired."""
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return False
            if self.now() >= expiry:
                del self._tokens[token]
                return False
            return True

    def expire_tokens(self) -> int:
        """Invalidate every issued token (the next call gets 401); returns how many."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
            return count
