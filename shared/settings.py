"""All process configuration, read from the environment (prefix ``LEDGERBRIDGE_``).

The variable names are ledgerbridge's public interface. :func:`load_settings` validates them
once at start-up and turns any problem into a :class:`SettingsError` whose message names the
variable to fix. Nothing else in the code reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.cipher import HOW_TO_MAKE_A_KEY, MalformedSecretKey, cipher_from_setting

ENV_PREFIX = "LEDGERBRIDGE_"

# Zuora REST roots per data centre (zuora-api.md section 1.3). A named choice or a raw URL.
ZUORA_DATA_CENTRES: dict[str, str] = {
    "us-developer": "https://rest.test.zuora.com",
    "us-sandbox": "https://rest.sandbox.na.zuora.com",
    "us-sandbox-cloud2": "https://rest.apisandbox.zuora.com",
    "us-production": "https://rest.na.zuora.com",
    "us-production-cloud2": "https://rest.zuora.com",
    "eu-developer": "https://rest.test.eu.zuora.com",
    "eu-sandbox": "https://rest.sandbox.eu.zuora.com",
    "eu-production": "https://rest.eu.zuora.com",
    "apac-developer": "https://rest.test.ap.zuora.com",
    "apac-production": "https://rest.ap.zuora.com",
}

# Contract-version-4 Default endpoints (acumatica-api.md section 1.2).
ACUMATICA_ENDPOINTS = (
    "Default/20.200.001",
    "Default/22.200.001",
    "Default/23.200.001",
    "Default/24.200.001",
    "Default/25.200.001",
)

# Zuora's summary-GL sample list for an Invoice Settlement tenant (zuora-api.md section 7.1).
DEFAULT_JOURNAL_TRANSACTION_TYPES = (
    "Invoice Item",
    "Taxation Item",
    "Debit Memo Item (Charge)",
    "Debit Memo Item (Tax)",
    "Credit Memo Item (Charge)",
    "Credit Memo Item (Tax)",
    "Credit Memo Application Item",
    "Electronic Payment Application Item",
    "External Payment Application Item",
    "Electronic Refund Application Item",
    "External Refund Application Item",
)


class SettingsError(ValueError):
    """Configuration is missing or wrong; the message names each variable to fix."""


def resolve_zuora_base_url(value: str) -> str:
    """A data-centre name (``us-sandbox``, ``eu-production`` ...) or an http(s) URL -> REST root."""
    named = ZUORA_DATA_CENTRES.get(value.strip().lower())
    if named:
        return named
    if not re.match(r"^https?://[^\s/]+", value):
        choices = ", ".join(sorted(ZUORA_DATA_CENTRES))
        raise ValueError(f"must be an http(s) URL or one of: {choices}")
    return value.rstrip("/")


class Settings(BaseSettings):
    """Configuration for one ledgerbridge process. Frozen: built once, passed down."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    database_url: str = "sqlite:///ledgerbridge.db"
    # A PostgreSQL ledger's connections per process, at most (shared/ledger/db.py PG_POOL_SIZE).
    database_pool_size: int = Field(default=10, ge=1, le=100)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The Celery queue every task goes to and the worker consumes (tests use a unique one).
    queue: str = "ledgerbridge"
    secret_key: SecretStr | None = None
    log_level: str = "INFO"

    # The default connection (a Zuora tenant and its ERP target).
    connection: str = "default"
    zuora_base_url: str | None = None
    zuora_client_id: str | None = None
    zuora_client_secret: SecretStr | None = None
    zuora_entity_id: str | None = None
    zuora_requests_per_minute: int = Field(default=2500, ge=1)
    zuora_max_concurrent: int = Field(default=20, ge=1)
    zuora_timeout_seconds: float = Field(default=60.0, gt=0)

    erp: Literal["acumatica", "file"] = "file"
    gl_export_dir: Path = Path("gl-export")
    acumatica_url: str | None = None
    acumatica_endpoint: str = "Default/24.200.001"
    acumatica_tenant: str | None = None
    acumatica_username: str | None = None
    acumatica_password: SecretStr | None = None
    acumatica_branch: str | None = None
    acumatica_client_id: str | None = None
    acumatica_client_secret: SecretStr | None = None
    acumatica_refresh_token: SecretStr | None = None
    acumatica_requests_per_minute: int = Field(default=150, ge=1)
    acumatica_max_concurrent: int = Field(default=2, ge=1)
    acumatica_max_sessions: int = Field(default=2, ge=1)
    # A document dated in a financial period closed in Acumatica: park it, or post it into the
    # next open period (with a note on the document saying why).
    acumatica_closed_period: Literal["park", "next_open"] = "park"

    mapping_file: Path | None = None
    # The default connection's maker-checker rule (shared.close.approval): none, close (a close
    # waits after its check until a second person approves what it will post) or all.
    approval: Literal["none", "close", "all"] = "none"
    journal_transaction_types: str | None = None
    callout_hmac_secret: SecretStr | None = None
    # While the default connection's callout secret is rotated: the one Zuora may still sign with.
    callout_hmac_previous_secret: SecretStr | None = None
    # Larger callout bodies are refused (413) before they are read whole; ours are ~120 bytes.
    callout_max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    # GET /metrics answers only a scraper presenting this bearer token (404 when it is not set).
    metrics_token: SecretStr | None = None
    notify_webhook_url: str | None = None
    # A notice the webhook did not take is sent again this long after, doubling up to the max.
    notify_retry_base_seconds: float = Field(default=10.0, ge=0.1)
    notify_retry_max_seconds: float = Field(default=3600.0, ge=1)

    # Item-level sync (shared/item_level): beat intervals, the high-water-mark overlap, timeouts.
    pull_interval_seconds: int = Field(default=300, ge=1)
    # Per-stream intervals overriding the one above: "invoices=60,payments=120".
    pull_stream_intervals: str | None = None
    # External payments fire no callout (zuora-api.md 12.5): the payments stream is also pulled this often.
    external_payments_poll_seconds: int = Field(default=300, ge=1)
    pull_overlap_seconds: int = Field(default=300, ge=0)
    pull_max_pages: int = Field(default=200, ge=1)
    pull_lock_seconds: int = Field(default=300, ge=5)
    posting_timeout_seconds: int = Field(default=900, ge=5)
    # A connection's posting batches waiting in the broker beyond this many go behind every other
    # connection's (shared/coordination/fair_share.py); 0 sends them all at one priority.
    fair_share_batches: int = Field(default=8, ge=0)
    # A create whose answer was lost and that a lookup does not find is sent again only this long
    # after the loss: the ERP may still be running the lost request (ASP.NET's default
    # executionTimeout is 110 s). A lookup that finds it settles it at once.
    in_doubt_quiet_seconds: float = Field(default=120.0, ge=0)
    sweep_interval_seconds: int = Field(default=60, ge=1)
    # A running close that no live chain drives and that has not changed for this long (its step's
    # worker was killed, Redis lost its queue) is resumed by beat's close sweep.
    close_stale_seconds: int = Field(default=900, ge=10)
    sweep_grace_seconds: int = Field(default=300, ge=1)
    mark_audit_interval_seconds: int = Field(default=3600, ge=1)
    mark_audit_window_seconds: int = Field(default=21600, ge=60)
    # Zuora retries a callout up to 5 times, up to a day apart (zuora-api.md 12.2): a week covers it.
    callout_max_age_seconds: int = Field(default=7 * 86400, ge=60)
    # The receiver hands callouts on in batches: at most this long after the first of a batch.
    callout_batch_seconds: float = Field(default=0.1, ge=0, le=5)
    item_release: bool = False
    audit_retention_days: int = Field(default=400, ge=1)

    # The Finance console (worker/console, under /console of the web process).
    # Signs its session cookies; without it the console answers 503 saying to set it.
    console_secret: SecretStr | None = None
    # A session unused for this long is over (sign in again).
    console_session_minutes: int = Field(default=480, ge=1, le=7 * 24 * 60)
    # Cookies without the Secure flag: only for plain-http use off localhost (never in production).
    console_insecure_cookies: bool = False
    # Behind an authenticating reverse proxy: the header naming the signed-in user (for example
    # X-Forwarded-User). Honoured only when set, and only for users that exist in the ledger.
    console_trusted_user_header: str | None = None

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql(\+psycopg)?)://", value):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not re.match(r"^rediss?://", value):
            raise ValueError("must start with redis:// or rediss://")
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        # Comma-separated during a rotation: the first key encrypts, every key decrypts.
        try:
            cipher = cipher_from_setting(value)
        except MalformedSecretKey as exc:
            raise ValueError(
                "must be a Fernet key (32 url-safe base64-encoded bytes), or several separated by "
                f"commas; key #{exc.position} is not one. {HOW_TO_MAKE_A_KEY.capitalize()}"
            ) from None
        if cipher is None:
            raise ValueError(f"must be a Fernet key (32 url-safe base64-encoded bytes); {HOW_TO_MAKE_A_KEY}")
        return value

    @field_validator("zuora_base_url")
    @classmethod
    def _check_zuora_base_url(cls, value: str | None) -> str | None:
        return None if value is None else resolve_zuora_base_url(value)

    @field_validator("acumatica_endpoint")
    @classmethod
    def _check_acumatica_endpoint(cls, value: str) -> str:
        if value not in ACUMATICA_ENDPOINTS:
            raise ValueError(
                f"must be one of the contract-version-4 endpoints: {', '.join(ACUMATICA_ENDPOINTS)}"
            )
        return value

    @field_validator("acumatica_url", "notify_webhook_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL")
        return None if value is None else value.rstrip("/")

    @field_validator("console_secret")
    @classmethod
    def _check_console_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError(
                "must be at least 32 characters (make one with: python -c "
                "'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return value

    @field_validator("console_trusted_user_header")
    @classmethod
    def _check_trusted_header(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not re.match(r"^[A-Za-z0-9-]+$", value.strip()):
            raise ValueError("must be an HTTP header name such as X-Forwarded-User")
        return value.strip()

    @field_validator("pull_stream_intervals")
    @classmethod
    def _check_stream_intervals(cls, value: str | None) -> str | None:
        # Stream names are checked where the streams are known (worker/schedule.py).
        if value:
            for part in value.split(","):
                name, _, seconds = part.strip().partition("=")
                if not name.strip() or not seconds.strip().isdigit() or int(seconds) < 1:
                    raise ValueError("must look like 'invoices=60,payments=120' (seconds >= 1)")
        return value

    @property
    def stream_intervals(self) -> dict[str, int]:
        """``LEDGERBRIDGE_PULL_STREAM_INTERVALS`` as ``{stream: seconds}``."""
        result: dict[str, int] = {}
        for part in (self.pull_stream_intervals or "").split(","):
            if part.strip():
                name, _, seconds = part.strip().partition("=")
                result[name.strip()] = int(seconds)
        return result

    @property
    def transaction_types(self) -> tuple[str, ...]:
        """Journal-run transaction types: the comma-separated variable, else Zuora's default list."""
        if not self.journal_transaction_types:
            return DEFAULT_JOURNAL_TRANSACTION_TYPES
        return tuple(t.strip() for t in self.journal_transaction_types.split(",") if t.strip())

    def require(self, *fields: str) -> None:
        """Raise :class:`SettingsError` naming every variable among ``fields`` that is unset."""
        missing = [f"{ENV_PREFIX}{f.upper()}" for f in fields if getattr(self, f) in (None, "")]
        if missing:
            raise SettingsError("missing configuration: set " + ", ".join(missing))


def load_settings(**overrides: object) -> Settings:
    """Build and validate settings from the environment; errors name the variable to fix."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, validated on first use."""
    return load_settings()
