"""The evidence pack's ``configuration.json``: the connection and the settings that shape a close,
from allow-lists of harmless fields only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.connection_list import list_connections
from shared.evidence.rows import bare_url, origin_only
from shared.ledger.repo import Ledger
from shared.settings import Settings

# -- configuration --------------------------------------------------------------------------------

# The settings shown as they are: none of them can hold a credential.
PLAIN_SETTINGS = (
    "connection",
    "queue",
    "erp",
    "gl_export_dir",
    "mapping_file",
    "acumatica_endpoint",
    "zuora_requests_per_minute",
    "zuora_max_concurrent",
    "zuora_timeout_seconds",
    "acumatica_requests_per_minute",
    "acumatica_max_concurrent",
    "acumatica_max_sessions",
    "item_release",
    "close_stale_seconds",
    "pull_interval_seconds",
    "pull_overlap_seconds",
    "sweep_interval_seconds",
    "audit_retention_days",
    "notify_retry_base_seconds",
    "notify_retry_max_seconds",
    "approval",
)
# Settings that hold a secret: only whether each is set is shown.
SECRET_SETTINGS = (
    "secret_key",
    "zuora_client_secret",
    "acumatica_password",
    "acumatica_client_secret",
    "acumatica_refresh_token",
    "callout_hmac_secret",
    "callout_hmac_previous_secret",
    "metrics_token",
    "console_secret",
)
# A connection's fields shown as they are (``shared.connection_list`` shapes them).
CONNECTION_FIELDS = (
    "name",
    "source",
    "zuora_client_id",
    "zuora_entity_id",
    "zuora_requests_per_minute",
    "zuora_max_concurrent",
    "erp",
    "export_dir",
    "approval",
)
CONNECTION_URL_FIELDS = ("zuora_base_url",)
ACUMATICA_FIELDS = (
    "endpoint",
    "username",
    "tenant",
    "branch",
    "client_id",
    "requests_per_minute",
    "max_concurrent",
    "max_sessions",
)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _without_password(url: str) -> str:
    """A database or Redis URL with any password removed (the user name stays)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _connection_configuration(ledger: Ledger, settings: Settings, connection: str) -> dict[str, Any]:
    listed = list_connections(ledger, settings)
    found = next((row for row in listed.rows if row.get("name") == connection), None)
    if found is None:
        return {"name": connection, "found": False, "note": listed.environment_problem or "not configured"}
    shown: dict[str, Any] = {"found": True}
    for name in CONNECTION_FIELDS:
        if name in found:
            shown[name] = _plain(found[name])
    for name in CONNECTION_URL_FIELDS:
        if found.get(name):
            shown[name] = bare_url(str(found[name]))
    acumatica = found.get("acumatica")
    if isinstance(acumatica, Mapping):
        shown["acumatica"] = {k: _plain(acumatica[k]) for k in ACUMATICA_FIELDS if k in acumatica}
        if acumatica.get("url"):
            shown["acumatica"]["url"] = bare_url(str(acumatica["url"]))
    return shown


def configuration(ledger: Ledger, settings: Settings, connection: str) -> dict[str, Any]:
    """The connection and the settings that shape a close, built from allow-lists only."""
    values: dict[str, Any] = {}
    for name in PLAIN_SETTINGS:
        if hasattr(settings, name):
            values[name] = _plain(getattr(settings, name))
    values["journal_transaction_types"] = list(settings.transaction_types)
    values["database_url"] = _without_password(settings.database_url)
    values["redis_url"] = _without_password(settings.redis_url)
    values["notify_webhook"] = origin_only(settings.notify_webhook_url)
    secrets_set = sorted(
        f"LEDGERBRIDGE_{name.upper()}" for name in SECRET_SETTINGS if getattr(settings, name, None)
    )
    return {
        "connection": _connection_configuration(ledger, settings, connection),
        "settings": values,
        "secrets_set": secrets_set,
    }
