"""Testing a connection: probe each side with clients of its own and report what answered.

:func:`run_checks` proves the *stored* credentials: it builds its own Zuora and Acumatica clients
under a throwaway Redis namespace, so the fleet's cached token or session never answers for them
and the workers' shared token, session and rate buckets are never disturbed. The probe's HTTP
exchanges are written to the ledger directly (``Ledger.record_exchange``) under the audit subject
``connection:<name>``. Every failure is reported as a failed :class:`Check`, never raised.
"""

from __future__ import annotations

import dataclasses
import tempfile
import uuid
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.fernet import MultiFernet

from shared.connections import AcumaticaTarget, Connection, FileTarget, ZuoraTarget
from shared.errors import ApiError
from shared.exchange import Exchange, audit_subject

if TYPE_CHECKING:
    import redis

    from shared.erp.acumatica_session import DurableRefreshToken
    from shared.ledger.repo import Ledger

# A connection test should answer in seconds: few retries, short waits.
PROBE_TIMEOUT_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class Check:
    """One probe of one side of a connection."""

    side: str
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        where = f" [{exc.method} {exc.url}]" if exc.method and exc.url else ""
        request_id = f" request id {exc.request_id}" if exc.request_id else ""
        return f"{exc.message}{where}{request_id}"
    return f"{type(exc).__name__}: {exc}"


def _probe_audit(ledger: Ledger | None, connection: str) -> Callable[[Exchange], None] | None:
    """The probe clients' audit hook: the exchange is recorded under the real connection name."""
    if ledger is None:
        return None

    def hook(exchange: Exchange) -> None:
        ledger.record_exchange(dataclasses.replace(exchange, connection=connection))

    return hook


def probe_zuora(
    target: ZuoraTarget,
    *,
    connection: str,
    redis: redis.Redis[bytes],
    audit: Callable[[Exchange], None] | None = None,
    namespace: str,
) -> list[Check]:
    """Zuora: a fresh OAuth token for the stored client credentials, then one page of accounting
    periods read with it. ``namespace`` is the throwaway connection key the probe's token and rate
    bucket live under (the caller deletes them)."""
    from shared.zuora.auth import token_key
    from shared.zuora.client import ZuoraClient
    from shared.zuora.retry import RetryPolicy

    client = ZuoraClient(
        target,
        connection=namespace,
        redis=redis,
        audit=audit,
        policy=RetryPolicy(max_attempts=2, cap=2.0),
        max_inline_wait=5.0,
    )
    checks: list[Check] = []
    try:
        try:
            periods = list(islice(client.periods.list(page_size=20), 20))
        except ApiError as exc:
            got_token = bool(redis.exists(token_key(namespace)))
            if got_token:
                checks.append(Check("zuora", "OAuth token", True, f"issued to client {target.client_id}"))
                checks.append(Check("zuora", "read accounting periods", False, _error_text(exc)))
            else:
                checks.append(Check("zuora", "OAuth token", False, _error_text(exc)))
                checks.append(Check("zuora", "read accounting periods", False, "skipped: no token"))
            return checks
        checks.append(Check("zuora", "OAuth token", True, f"issued to client {target.client_id}"))
        open_names = [p.name for p in periods if p.status == "Open"]
        detail = f"{len(periods)} period(s) on the first page"
        if open_names:
            detail += f"; open: {', '.join(open_names[:3])}" + (" ..." if len(open_names) > 3 else "")
        checks.append(Check("zuora", "read accounting periods", True, detail))
        return checks
    finally:
        client.close()


def _mapping_reference(mapping_file: Path | None) -> tuple[list[str], list[str]] | str | None:
    """(accounts, currencies) named by the mapping file; the error text if it is unreadable; None
    when no mapping file is configured."""
    if mapping_file is None:
        return None
    from shared.mapping import MappingFileError, load_mapping

    try:
        mapping = load_mapping(mapping_file)
    except MappingFileError as exc:
        return str(exc)
    return sorted(mapping.erp_accounts()), sorted(mapping.erp_currencies())


def probe_acumatica(
    target: AcumaticaTarget,
    *,
    connection: str,
    redis: redis.Redis[bytes],
    audit: Callable[[Exchange], None] | None = None,
    namespace: str,
    cipher: MultiFernet | None = None,
    refresh_tokens: DurableRefreshToken | None = None,
    mapping_file: Path | None = None,
) -> list[Check]:
    """Acumatica: sign in with the stored credentials (a new session, logged out afterwards),
    find the endpoint among those ``GET /entity`` lists, then read reference data - the mapping
    file's accounts and currencies when one is configured, else the currency list.
    ``refresh_tokens`` is the connection's durable refresh token (the fleet's, not the probe's)."""
    from shared.erp.acumatica import AcumaticaErp
    from shared.erp.acumatica_client import AcumaticaClient
    from shared.erp.acumatica_policy import RetryPolicy
    from shared.erp.acumatica_session import refresh_token_key, session_key

    # The fleet keeps the newest OAuth refresh token in Redis and in the ledger, and Acumatica
    # rotates it on every use (acumatica-api.md section 2.2): the probe starts from the fleet's
    # and hands the new one back to both, so probing never strands the workers with a spent token.
    fleet_refresh = refresh_token_key(connection)
    probe_refresh = refresh_token_key(namespace)
    if target.client_id:
        stored = redis.get(fleet_refresh)
        if stored is not None:
            redis.set(probe_refresh, stored, ex=3600)

    client = AcumaticaClient(
        target,
        connection=namespace,
        redis=redis,
        audit=audit,
        cipher=cipher,
        refresh_tokens=refresh_tokens,
        policy=RetryPolicy(max_attempts=2, cap=2.0, max_inline_wait=5.0),
        timeout=PROBE_TIMEOUT_SECONDS,
        throttle_wait=10.0,
    )
    checks: list[Check] = []
    try:
        how = f"OAuth client {target.client_id}" if target.client_id else f"user {target.username}"
        try:
            client.sessions.current()
        except ApiError as exc:
            checks.append(Check("acumatica", "sign in", False, _error_text(exc)))
            checks.append(Check("acumatica", f"endpoint {target.endpoint}", False, "skipped: not signed in"))
            checks.append(Check("acumatica", "reference data", False, "skipped: not signed in"))
            return checks
        tenant = f" in tenant {target.tenant}" if target.tenant else ""
        checks.append(Check("acumatica", "sign in", True, f"signed in as {how}{tenant}"))
        try:
            available = client.endpoints()
        except ApiError as exc:
            checks.append(Check("acumatica", f"endpoint {target.endpoint}", False, _error_text(exc)))
        else:
            if client.endpoint in available:
                checks.append(
                    Check("acumatica", f"endpoint {target.endpoint}", True, "served by the instance")
                )
            else:
                checks.append(
                    Check(
                        "acumatica",
                        f"endpoint {target.endpoint}",
                        False,
                        "not served by the instance; it lists: " + (", ".join(available) or "nothing"),
                    )
                )
                checks.append(Check("acumatica", "reference data", False, "skipped: wrong endpoint"))
                return checks
        checks.append(_acumatica_reference_check(AcumaticaErp(client), mapping_file))
        return checks
    finally:
        client.close()
        if target.client_id:
            issued = redis.get(probe_refresh)
            if issued is not None and issued != redis.get(fleet_refresh):
                redis.set(fleet_refresh, issued, ex=max(int(redis.ttl(probe_refresh)), 1))
        redis.delete(session_key(namespace))


def _acumatica_reference_check(erp: Any, mapping_file: Path | None) -> Check:
    reference = _mapping_reference(mapping_file)
    if isinstance(reference, str):
        return Check("acumatica", "reference data", False, reference)
    try:
        if reference is None:
            rows = erp.client.get_list("Currency", select=["CurrencyID", "Active"])
            active = sorted(str(r.get("CurrencyID")) for r in rows if r.get("Active") is not False)
            return Check(
                "acumatica",
                "reference data",
                True,
                f"{len(active)} active currencies readable ({', '.join(active[:5])}"
                + (" ..." if len(active) > 5 else "")
                + "); set LEDGERBRIDGE_MAPPING_FILE to check the mapped accounts",
            )
        accounts, currencies = reference
        problems: list[str] = erp.check_reference_data(accounts, currencies)
    except ApiError as exc:
        return Check("acumatica", "reference data", False, _error_text(exc))
    if problems:
        return Check("acumatica", "reference data", False, "; ".join(problems))
    return Check(
        "acumatica",
        "reference data",
        True,
        f"the mapping file's {len(accounts)} account(s) and {len(currencies)} currency(ies) exist and are active",
    )


def probe_export_dir(target: FileTarget) -> list[Check]:
    """The file target: the export directory exists (or can be made) and a file can be written."""
    directory = target.export_dir
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".ledgerbridge-probe-", delete=True) as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as exc:
        return [Check("file", f"write to {directory}", False, f"{exc.strerror or exc} ({directory})")]
    return [Check("file", f"write to {directory}", True, "the directory is writable")]


def run_checks(
    conn: Connection,
    *,
    redis: redis.Redis[bytes],
    ledger: Ledger | None = None,
    cipher: MultiFernet | None = None,
    refresh_tokens: DurableRefreshToken | None = None,
    mapping_file: Path | None = None,
) -> list[Check]:
    """Every check of ``conn``, Zuora first, then its ERP target; each side's failures are reported
    (never raised). With ``ledger`` the probe's exchanges are audited under ``connection:<name>``;
    ``cipher`` seals the probe's Acumatica session as the workers seal theirs; ``refresh_tokens``
    is where the connection's rotating OAuth refresh token is kept durably (read when Redis has
    none, written first on each rotation). The probe's Redis keys are deleted afterwards."""
    namespace = f"lbprobe-{uuid.uuid4().hex}"
    audit = _probe_audit(ledger, conn.name)
    checks: list[Check] = []
    try:
        with audit_subject(f"connection:{conn.name}"):
            checks += probe_zuora(
                conn.zuora, connection=conn.name, redis=redis, audit=audit, namespace=namespace
            )
            if conn.acumatica is not None:
                checks += probe_acumatica(
                    conn.acumatica,
                    connection=conn.name,
                    redis=redis,
                    audit=audit,
                    namespace=namespace,
                    cipher=cipher,
                    refresh_tokens=refresh_tokens,
                    mapping_file=mapping_file,
                )
            elif conn.file is not None:
                checks += probe_export_dir(conn.file)
    finally:
        # The namespace holds a uuid, so this matches only the probe's own keys.
        stale = list(redis.scan_iter(match=f"*{namespace}*", count=1000))
        if stale:
            redis.delete(*stale)
    return checks
