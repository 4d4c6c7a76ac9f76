"""Run-time knobs of the Zuora sandbox (``POST /_sandbox/config``), validated on every change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .catalog import ENABLED_TRANSACTION_TYPES, FX_TO_HOME

# The tenant's fixed rate-limit windows (name, seconds) that rate_limit_per_minute/hour/day apply to.
WINDOWS = (("minute", 60), ("hour", 3600), ("day", 86400))

# (Object Query max pageSize, v1 list max pageSize) by source.
PAGE_LIMITS: dict[str, tuple[int, int]] = {"web": (99, 300), "sdk": (50, 40)}


@dataclass(frozen=True)
class JobTiming:
    """How an asynchronous job (trial balance, journal run) moves Pending -> Processing -> done.

    Time mode (``polls`` is None): Pending for ``pending_seconds``, then Processing for
    ``processing_seconds``, then done; 0 and 0 finish at once. Poll mode (``polls = N``): the job is
    done on the N-th status read, Processing on the read before, Pending before that.
    """

    pending_seconds: float = 0.2
    processing_seconds: float = 0.2
    polls: int | None = None

    @classmethod
    def parse(cls, value: Any, current: JobTiming) -> JobTiming:
        if not isinstance(value, Mapping):
            raise ValueError("a job timing is an object {pending_seconds, processing_seconds, polls}")
        unknown = set(value) - {"pending_seconds", "processing_seconds", "polls"}
        if unknown:
            raise ValueError(f"unknown job timing keys: {sorted(unknown)}")
        pending = float(value.get("pending_seconds", current.pending_seconds))
        processing = float(value.get("processing_seconds", current.processing_seconds))
        polls = value.get("polls", current.polls)
        if pending < 0 or processing < 0:
            raise ValueError("job durations must be >= 0")
        if polls is not None and (isinstance(polls, bool) or not isinstance(polls, int) or polls < 1):
            raise ValueError("polls must be a positive integer or null")
        return cls(pending, processing, polls)


@dataclass(frozen=True)
class SandboxConfig:
    """Everything about the sandbox tenant that a test or benchmark may want to change."""

    token_lifetime_seconds: int = 3599
    trial_balance: JobTiming = field(default_factory=JobTiming)
    journal_run: JobTiming = field(default_factory=JobTiming)
    # Fixed extra latency on every /oauth, /v1 and /object-query call (benchmarks, timeouts).
    latency_ms: float = 0.0
    # The tenant's default minor version when a request sends no Zuora-Version (section 0).
    default_version: str = "186.0"
    tenant_utc_offset_minutes: int = -480
    wsdl_version: int = 79
    # Rate limits per tenant (section 2.1); production defaults so benchmarks are not throttled.
    rate_limit_per_minute: int = 50_000
    rate_limit_per_hour: int = 2_250_000
    rate_limit_per_day: int = 27_000_000
    token_requests_per_minute_per_ip: int = 100
    concurrency_default: int = 40
    concurrency_object_query: int = 80
    concurrency_retry_after_seconds: int = 120
    # Every N-th call that needs a bearer token finds every issued token revoked (401; the client
    # must fetch a new one); 0 = never. Counted by the gateway (``Gateway.revoke_due``).
    revoke_token_every: int = 0
    # Whether the API user holds "Override Transferred to Accounting" (section 8.4).
    override_transferred_permission: bool = False
    home_currency: str = "USD"
    currencies: tuple[str, ...] = ("USD", "EUR", "GBP")
    fx_enabled: bool = True
    fx_rates: tuple[tuple[str, str], ...] = tuple(FX_TO_HOME.items())
    segmentation_rule_name: str = "Region Rule"
    segment_names: tuple[str, ...] = ("Region",)
    enabled_transaction_types: tuple[str, ...] = ENABLED_TRANSACTION_TYPES
    idempotency_retention_seconds: int = 86_400
    query_locator_ttl_seconds: int = 900
    # Zuora's sources disagree on page limits (docs/vendor-notes.md): "web" takes Zuora's reference
    # pages (Object Query pageSize 1..99, the v1 finance lists up to 300), "sdk" its OpenAPI
    # document (1..50 and up to 40). A larger pageSize is a 400 that names it.
    page_limits: str = "web"

    @property
    def object_query_max_page_size(self) -> int:
        return PAGE_LIMITS[self.page_limits][0]

    @property
    def list_max_page_size(self) -> int:
        """The largest ``pageSize`` of the v1 lists (accounting periods and codes, journal entries)."""
        return PAGE_LIMITS[self.page_limits][1]

    def with_changes(self, changes: Mapping[str, Any]) -> SandboxConfig:
        """A copy with ``changes`` applied; raises ``ValueError`` naming a bad key or value."""
        known = {f.name: f for f in fields(self)}
        updates: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown config key {key!r}; known: {sorted(known)}")
            current = getattr(self, key)
            if isinstance(current, JobTiming):
                updates[key] = JobTiming.parse(value, current)
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be a boolean")
                updates[key] = value
            elif isinstance(current, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{key} must be an integer")
                updates[key] = value
            elif isinstance(current, float):
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError(f"{key} must be a non-negative number")
                updates[key] = float(value)
            elif isinstance(current, str):
                if not isinstance(value, str):
                    raise ValueError(f"{key} must be a string")
                if key == "page_limits" and value not in PAGE_LIMITS:
                    raise ValueError(f"page_limits must be one of {sorted(PAGE_LIMITS)}")
                updates[key] = value
            elif key == "fx_rates":
                if not isinstance(value, Mapping):
                    raise ValueError("fx_rates must be an object {currency: rate}")
                updates[key] = tuple((str(k), str(v)) for k, v in value.items())
            else:
                if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{key} must be a list of strings")
                updates[key] = tuple(value)
        return replace(self, **updates)

    def fx_rate(self, currency: str) -> str | None:
        return dict(self.fx_rates).get(currency)

    def concurrency_limit(self, limit_type: str) -> int:
        return self.concurrency_object_query if limit_type == "Object Query" else self.concurrency_default
