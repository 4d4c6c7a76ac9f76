"""A connection: one Zuora tenant and the ERP target its data goes to.

Frozen values, built either from the environment (the default connection) or from a ledger
row (``ledgerbridge connection add``). Every lock, token cache, rate bucket and mark is keyed
by ``Connection.name``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shared.settings import Settings

ApprovalMode = Literal["none", "close", "all"]
APPROVAL_MODES: tuple[ApprovalMode, ...] = ("none", "close", "all")


def approval_mode(value: str) -> ApprovalMode:
    """``value`` as an approval mode; ValueError naming the modes for anything else."""
    for mode in APPROVAL_MODES:
        if value == mode:
            return mode
    raise ValueError(f"approval must be one of {', '.join(APPROVAL_MODES)}, not {value!r}")


@dataclass(frozen=True)
class ZuoraTarget:
    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    entity_id: str | None = None
    requests_per_minute: int = 2500
    max_concurrent: int = 20
    timeout_seconds: float = 60.0


@dataclass(frozen=True)
class AcumaticaTarget:
    url: str
    endpoint: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tenant: str | None = None
    branch: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    requests_per_minute: int = 150
    max_concurrent: int = 2
    max_sessions: int = 2
    # A document whose financial period is closed in Acumatica: "park" it for a person (who opens
    # the period and replays it), or "next_open": post it into the next open period, noted.
    closed_period: Literal["park", "next_open"] = "park"


def acumatica_settings(target: AcumaticaTarget) -> dict[str, Any]:
    """The non-secret settings of an Acumatica target: what may be stored or shown in clear."""
    values = {
        "url": target.url,
        "endpoint": target.endpoint,
        "username": target.username,
        "tenant": target.tenant,
        "branch": target.branch,
        "client_id": target.client_id,
        "requests_per_minute": target.requests_per_minute,
        "max_concurrent": target.max_concurrent,
        "max_sessions": target.max_sessions,
        "closed_period": target.closed_period,
    }
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class FileTarget:
    export_dir: Path


@dataclass(frozen=True)
class Connection:
    name: str
    zuora: ZuoraTarget
    erp_kind: Literal["acumatica", "file"]
    acumatica: AcumaticaTarget | None = None
    file: FileTarget | None = None
    # The HMAC secrets this connection's callouts are signed with: the current one first, then the
    # previous one while a rotation is under way. Empty: the connection takes no callouts.
    callout_secrets: tuple[str, ...] = field(default=(), repr=False)
    # Maker-checker (:mod:`shared.close.approval`): ``close`` stops each close after its check
    # until an approver who did not start it approves; ``all`` also holds manual journal entries.
    approval: ApprovalMode = "none"

    @property
    def takes_callouts(self) -> bool:
        return any(self.callout_secrets)


def _secret(value: object) -> str | None:
    getter = getattr(value, "get_secret_value", None)
    return getter() if getter else None


def default_connection(settings: Settings) -> Connection:
    """The connection the ``LEDGERBRIDGE_*`` variables describe."""
    settings.require("zuora_base_url", "zuora_client_id", "zuora_client_secret")
    assert settings.zuora_base_url and settings.zuora_client_id  # narrowed by require()
    zuora = ZuoraTarget(
        base_url=settings.zuora_base_url,
        client_id=settings.zuora_client_id,
        client_secret=_secret(settings.zuora_client_secret) or "",
        entity_id=settings.zuora_entity_id,
        requests_per_minute=settings.zuora_requests_per_minute,
        max_concurrent=settings.zuora_max_concurrent,
        timeout_seconds=settings.zuora_timeout_seconds,
    )
    acumatica = None
    file_target = None
    if settings.erp == "acumatica":
        settings.require("acumatica_url")
        if not settings.acumatica_client_id:
            settings.require("acumatica_username", "acumatica_password")
        assert settings.acumatica_url
        acumatica = AcumaticaTarget(
            url=settings.acumatica_url,
            endpoint=settings.acumatica_endpoint,
            username=settings.acumatica_username,
            password=_secret(settings.acumatica_password),
            tenant=settings.acumatica_tenant,
            branch=settings.acumatica_branch,
            client_id=settings.acumatica_client_id,
            client_secret=_secret(settings.acumatica_client_secret),
            refresh_token=_secret(settings.acumatica_refresh_token),
            requests_per_minute=settings.acumatica_requests_per_minute,
            max_concurrent=settings.acumatica_max_concurrent,
            max_sessions=settings.acumatica_max_sessions,
            closed_period=settings.acumatica_closed_period,
        )
    else:
        file_target = FileTarget(export_dir=settings.gl_export_dir)
    return Connection(
        name=settings.connection,
        zuora=zuora,
        erp_kind=settings.erp,
        acumatica=acumatica,
        file=file_target,
        callout_secrets=environment_callout_secrets(settings),
        approval=settings.approval,
    )


def environment_callout_secrets(settings: Settings) -> tuple[str, ...]:
    """The default connection's callout secrets (``LEDGERBRIDGE_CALLOUT_HMAC_SECRET``, then
    ``LEDGERBRIDGE_CALLOUT_HMAC_PREVIOUS_SECRET`` during a rotation)."""
    values = (_secret(settings.callout_hmac_secret), _secret(settings.callout_hmac_previous_secret))
    return tuple(value for value in values if value)
