"""The connections in effect, without their secrets: those stored in the ledger and the one the
``LEDGERBRIDGE_*`` variables define, which wins for its name (as ``ports.connection`` decides)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.connections import Connection, acumatica_settings, default_connection
from shared.settings import Settings, SettingsError

if TYPE_CHECKING:
    from shared.ledger.models import ConnectionRow
    from shared.ledger.repo import Ledger


@dataclass(frozen=True)
class ConnectionList:
    """Every connection as :func:`connection_summary` shapes it, sorted by name when the
    environment adds one; ``environment_problem`` says why the environment's connection is left
    out when its variables are incomplete."""

    rows: list[dict[str, Any]]
    environment_problem: str | None = None


def list_connections(ledger: Ledger, settings: Settings) -> ConnectionList:
    """The stored connections, the environment's in place of a stored one of the same name."""
    rows = [connection_summary(row) for row in ledger.list_connections()]
    if settings.zuora_base_url is None:
        return ConnectionList(rows)
    try:
        env_conn = default_connection(settings)
    except SettingsError as exc:
        return ConnectionList(rows, str(exc))
    rows = [r for r in rows if r["name"] != env_conn.name]
    rows.append(environment_summary(env_conn))
    rows.sort(key=lambda r: str(r["name"]))
    return ConnectionList(rows)


def connection_summary(row: ConnectionRow) -> dict[str, Any]:
    """A stored connection without its secrets (the ``--json`` shape of ``connection list``)."""
    a = dict(row.config.get("acumatica") or {})
    z = dict(row.config.get("zuora") or {})
    return {
        "name": row.name,
        "source": "ledger",
        "zuora_base_url": row.zuora_base_url,
        "zuora_client_id": row.zuora_client_id,
        "zuora_entity_id": row.zuora_entity_id,
        "zuora_requests_per_minute": z.get("requests_per_minute"),
        "zuora_max_concurrent": z.get("max_concurrent"),
        "erp": row.erp_kind,
        "acumatica": a or None,
        "export_dir": (row.config.get("file") or {}).get("export_dir"),
        "approval": row.config.get("approval", "none"),
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def environment_summary(conn: Connection) -> dict[str, Any]:
    """The environment's connection in the shape of :func:`connection_summary`, no secrets."""
    acumatica = acumatica_settings(conn.acumatica) if conn.acumatica is not None else None
    return {
        "name": conn.name,
        "source": "environment",
        "zuora_base_url": conn.zuora.base_url,
        "zuora_client_id": conn.zuora.client_id,
        "zuora_entity_id": conn.zuora.entity_id,
        "zuora_requests_per_minute": conn.zuora.requests_per_minute,
        "zuora_max_concurrent": conn.zuora.max_concurrent,
        "erp": conn.erp_kind,
        "acumatica": acumatica,
        "export_dir": str(conn.file.export_dir) if conn.file else None,
        "approval": conn.approval,
        "created_at": None,
        "updated_at": None,
    }
