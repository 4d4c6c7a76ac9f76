"""Connections stored in the ledger, their secrets encrypted at rest (:class:`SecretBox`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from shared.connections import (
    AcumaticaTarget,
    Connection,
    FileTarget,
    ZuoraTarget,
    acumatica_settings,
    approval_mode,
)
from shared.ledger.db import session_scope
from shared.ledger.errors import ConnectionExists, UnknownConnection
from shared.ledger.models import ConnectionRow, ErpRefreshToken, utcnow
from shared.ledger.secrets import SecretBox


class ConnectionStore:
    """The connections' part of :class:`~shared.ledger.repo.Ledger` (one transaction a method)."""

    engine: Engine

    def add_connection(self, conn: Connection, box: SecretBox, *, replace: bool = False) -> ConnectionRow:
        """Store ``conn`` with its secrets encrypted by ``box``; :class:`ConnectionExists` if the
        name is taken (unless ``replace``)."""
        config, secrets = _split_connection(conn)
        token = box.encrypt_json(secrets)
        now = utcnow()
        try:
            with session_scope(self.engine) as session:
                row = session.exec(select(ConnectionRow).where(ConnectionRow.name == conn.name)).first()
                if row is not None and not replace:
                    raise ConnectionExists(
                        f"a connection named {conn.name!r} already exists; remove it first"
                    )
                if row is None:
                    row = ConnectionRow(
                        name=conn.name,
                        zuora_base_url=conn.zuora.base_url,
                        zuora_client_id=conn.zuora.client_id,
                        erp_kind=conn.erp_kind,
                        secrets=token,
                        created_at=now,
                    )
                row.zuora_base_url = conn.zuora.base_url
                row.zuora_client_id = conn.zuora.client_id
                row.zuora_entity_id = conn.zuora.entity_id
                row.erp_kind = conn.erp_kind
                row.config = config
                row.secrets = token
                row.updated_at = now
                session.add(row)
                session.flush()
                return row
        except IntegrityError:
            raise ConnectionExists(
                f"a connection named {conn.name!r} already exists; remove it first"
            ) from None

    def get_connection(self, name: str, box: SecretBox) -> Connection:
        """The named connection with its secrets decrypted; :class:`UnknownConnection` if absent."""
        with session_scope(self.engine, read_only=True) as session:
            row = session.exec(select(ConnectionRow).where(ConnectionRow.name == name)).first()
            if row is None:
                known = session.exec(select(ConnectionRow.name).order_by(col(ConnectionRow.name))).all()
                raise UnknownConnection(
                    f"no connection named {name!r} in the ledger (known: {', '.join(known) or 'none'}); "
                    "add it with `ledgerbridge connection add`"
                )
        return _join_connection(row, box.decrypt_json(row.secrets))

    def list_connections(self) -> list[ConnectionRow]:
        """Every stored connection, by name (``secrets`` stays encrypted)."""
        with session_scope(self.engine, read_only=True) as session:
            return list(session.exec(select(ConnectionRow).order_by(col(ConnectionRow.name))).all())

    def remove_connection(self, name: str) -> bool:
        """Delete the named connection and its ERP's stored refresh token (its records, marks and
        audit stay); False if absent."""
        with session_scope(self.engine) as session:
            row = session.exec(select(ConnectionRow).where(ConnectionRow.name == name)).first()
            if row is None:
                return False
            session.delete(row)
            token = session.get(ErpRefreshToken, name)
            if token is not None:
                session.delete(token)
            return True

    def rotate_secrets(self, box: SecretBox) -> int:
        """Re-encrypt every connection's secrets with ``box``'s first key, all or nothing;
        returns how many connections were re-encrypted."""
        with session_scope(self.engine) as session:
            rows = session.exec(select(ConnectionRow).with_for_update()).all()
            now = utcnow()
            for row in rows:
                row.secrets = box.rotate(row.secrets)
                row.updated_at = now
            return len(rows)


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _split_connection(conn: Connection) -> tuple[dict[str, Any], dict[str, Any]]:
    """(non-secret config, secrets) of a connection, in the ledger's storage layout."""
    if conn.erp_kind == "acumatica" and conn.acumatica is None:
        raise ValueError(f"connection {conn.name!r}: erp_kind 'acumatica' needs Acumatica settings")
    if conn.erp_kind == "file" and conn.file is None:
        raise ValueError(f"connection {conn.name!r}: erp_kind 'file' needs an export directory")
    z = conn.zuora
    config: dict[str, Any] = {
        "zuora": {
            "requests_per_minute": z.requests_per_minute,
            "max_concurrent": z.max_concurrent,
            "timeout_seconds": z.timeout_seconds,
        },
        "approval": conn.approval,
    }
    secrets: dict[str, Any] = {"zuora_client_secret": z.client_secret}
    if conn.acumatica is not None:
        a = conn.acumatica
        config["acumatica"] = acumatica_settings(a)
        secrets |= {
            "acumatica_password": a.password,
            "acumatica_client_secret": a.client_secret,
            "acumatica_refresh_token": a.refresh_token,
        }
    if conn.file is not None:
        config["file"] = {"export_dir": str(conn.file.export_dir)}
    if conn.callout_secrets:
        secrets["callout_secrets"] = list(conn.callout_secrets)
    return config, _drop_none(secrets)


def _join_connection(row: ConnectionRow, secrets: Mapping[str, Any]) -> Connection:
    z = row.config.get("zuora", {})
    zuora = ZuoraTarget(
        base_url=row.zuora_base_url,
        client_id=row.zuora_client_id,
        client_secret=secrets.get("zuora_client_secret", ""),
        entity_id=row.zuora_entity_id,
        requests_per_minute=int(z.get("requests_per_minute", 2500)),
        max_concurrent=int(z.get("max_concurrent", 20)),
        timeout_seconds=float(z.get("timeout_seconds", 60.0)),
    )
    acumatica = None
    if "acumatica" in row.config:
        a: Mapping[str, Any] = row.config["acumatica"]
        acumatica = AcumaticaTarget(
            url=a["url"],
            endpoint=a["endpoint"],
            username=a.get("username"),
            password=secrets.get("acumatica_password"),
            tenant=a.get("tenant"),
            branch=a.get("branch"),
            client_id=a.get("client_id"),
            client_secret=secrets.get("acumatica_client_secret"),
            refresh_token=secrets.get("acumatica_refresh_token"),
            requests_per_minute=int(a.get("requests_per_minute", 150)),
            max_concurrent=int(a.get("max_concurrent", 2)),
            max_sessions=int(a.get("max_sessions", 2)),
            closed_period="next_open" if a.get("closed_period") == "next_open" else "park",
        )
    file_target = (
        FileTarget(export_dir=Path(row.config["file"]["export_dir"])) if "file" in row.config else None
    )
    return Connection(
        name=row.name,
        zuora=zuora,
        erp_kind=cast(Literal["acumatica", "file"], row.erp_kind),
        acumatica=acumatica,
        file=file_target,
        callout_secrets=tuple(str(s) for s in secrets.get("callout_secrets") or ()),
        approval=approval_mode(str(row.config.get("approval", "none"))),
    )
