"""The composition root: builds, per process, the ledger, Redis, and each connection's clients.

One long-lived client per API and connection per process (opened on first use, closed by
:func:`close_all` at process shutdown). This is where the API clients' audit hooks, and the
Acumatica session's durable refresh token, are wired to the ledger, so ``zuora/`` and ``erp/``
never import ``ledger/``; and where the cipher of LEDGERBRIDGE_SECRET_KEY is handed to them.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import TYPE_CHECKING, Any

import redis
from cryptography.fernet import MultiFernet

from shared.cipher import cipher_from_setting
from shared.connections import Connection, default_connection
from shared.settings import Settings, get_settings

if TYPE_CHECKING:
    from shared.audit_writer import AuditWriter
    from shared.erp.base import ErpTarget
    from shared.ledger.refresh_tokens import LedgerRefreshToken
    from shared.ledger.repo import Ledger
    from shared.ledger.secrets import SecretBox
    from shared.zuora.client import ZuoraClient

log = logging.getLogger("ledgerbridge.ports")


class _Registry:
    """This process's long-lived clients, created on first use."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.redis: redis.Redis[bytes] | None = None
        self.ledger: Ledger | None = None
        self.zuora: dict[str, ZuoraClient] = {}
        self.erp: dict[str, ErpTarget] = {}
        self.audit: AuditWriter | None = None


_registry = _Registry()


def settings() -> Settings:
    return get_settings()


def redis_client() -> redis.Redis[bytes]:
    with _registry.lock:
        if _registry.redis is None:
            _registry.redis = redis.Redis.from_url(settings().redis_url, health_check_interval=30)
        return _registry.redis


def ledger() -> Ledger:
    with _registry.lock:
        if _registry.ledger is None:
            from shared.ledger.db import make_engine
            from shared.ledger.repo import Ledger

            _registry.ledger = Ledger(
                make_engine(settings().database_url, pg_pool_size=settings().database_pool_size)
            )
        return _registry.ledger


def secret_box() -> SecretBox:
    from shared.ledger.secrets import SecretBox

    key = settings().secret_key
    return SecretBox.from_setting(key.get_secret_value() if key else None)


def cipher() -> MultiFernet | None:
    """The cipher of LEDGERBRIDGE_SECRET_KEY (:mod:`shared.cipher`: the first key seals, every
    listed key opens), or None without a key."""
    return cipher_from_setting(settings().secret_key)


def refresh_token_store(name: str) -> LedgerRefreshToken | None:
    """Where connection ``name``'s newest OAuth refresh token outlives Redis: its row in the
    ledger, encrypted. None without LEDGERBRIDGE_SECRET_KEY (a token is never stored in clear):
    the newest token then lives in Redis only, as it did before the ledger kept it."""
    if settings().secret_key is None:
        log.warning(
            "LEDGERBRIDGE_SECRET_KEY is not set: the rotating Acumatica refresh token of %s is kept "
            "in Redis only and is lost if Redis is",
            name,
        )
        return None
    from shared.ledger.refresh_tokens import LedgerRefreshToken

    return LedgerRefreshToken(ledger(), name, secret_box())


def connection(name: str | None = None) -> Connection:
    """The named connection: the default one if the environment describes it, else the ledger's."""
    current = settings()
    name = name or current.connection
    if name == current.connection and current.zuora_base_url is not None:
        return default_connection(current)
    return ledger().get_connection(name, secret_box())


def connection_names() -> list[str]:
    """Every connection this deployment serves: the environment's default (when it describes one)
    and each one stored in the ledger."""
    current = settings()
    names = {row.name for row in ledger().list_connections()}
    if current.zuora_base_url is not None:
        names.add(current.connection)
    return sorted(names)


def _audit_hook() -> Any:
    """Every exchange goes to the ledger's audit trail and into the connection's API counters in
    Redis (calls, 429s and token requests for ``GET /metrics``, see ``shared.metrics``), written
    in batches by this process's one :class:`~shared.audit_writer.AuditWriter`."""
    with _registry.lock:
        if _registry.audit is None:
            from shared.audit_writer import AuditWriter

            _registry.audit = AuditWriter(ledger(), redis_client)
        return _registry.audit


def flush_audit() -> None:
    """Write this process's queued audit rows and API counters now (the end of a task, exit)."""
    writer = _registry.audit
    if writer is not None:
        writer.flush()


atexit.register(flush_audit)


def zuora(conn: Connection) -> ZuoraClient:
    with _registry.lock:
        client = _registry.zuora.get(conn.name)
        if client is None:
            from shared.zuora.client import ZuoraClient

            client = ZuoraClient(conn.zuora, connection=conn.name, redis=redis_client(), audit=_audit_hook())
            _registry.zuora[conn.name] = client
        return client


def erp(conn: Connection) -> ErpTarget:
    with _registry.lock:
        target = _registry.erp.get(conn.name)
        if target is None:
            target = _build_erp(conn)
            _registry.erp[conn.name] = target
        return target


def _build_erp(conn: Connection) -> ErpTarget:
    if conn.erp_kind == "acumatica":
        from shared.erp.acumatica import AcumaticaErp

        assert conn.acumatica is not None
        # The shared Acumatica session (cookies or bearer token) in Redis is a credential: sealed.
        return AcumaticaErp.from_target(
            conn.acumatica,
            connection=conn.name,
            redis=redis_client(),
            audit=_audit_hook(),
            cipher=cipher(),
            refresh_tokens=refresh_token_store(conn.name) if conn.acumatica.client_id else None,
        )
    from shared.erp.file_export import FileExportErp

    assert conn.file is not None
    return FileExportErp(conn.file.export_dir)


def close_all() -> None:
    """Close every client this process opened (logs out of ERP sessions). Safe to call twice."""
    with _registry.lock:
        writer, _registry.audit = _registry.audit, None
    if writer is not None:
        # First, and outside the lock: its last write uses the ledger and Redis below.
        writer.close()
    with _registry.lock:
        for target in _registry.erp.values():
            target.close()
        _registry.erp.clear()
        for client in _registry.zuora.values():
            client.close()
        _registry.zuora.clear()
        if _registry.ledger is not None:
            _registry.ledger.dispose()
            _registry.ledger = None
        if _registry.redis is not None:
            _registry.redis.close()
            _registry.redis = None


def reset_for_tests() -> None:
    """Forget cached clients and settings (tests that change the environment between cases)."""
    close_all()
    get_settings.cache_clear()
