"""Operating ledgerbridge: ``connection add|list|remove|test``, ``secrets rotate`` and ``explain``.

The lead wires these into the ``ledgerbridge`` command with :func:`register`. Exit codes follow
``worker/cli.py``: 0 done, 1 something needs a person (a failed check, nothing found), 2 bad
usage or configuration (the message says what to fix).

Connections live in the ledger with their secrets encrypted at rest (Fernet,
``LEDGERBRIDGE_SECRET_KEY``). Secrets not given as options are prompted for with hidden input, so
they never land in the shell history. The environment's ``LEDGERBRIDGE_*`` variables still
define the default connection; a stored connection of the same name is shadowed by it.

``connection test`` probes each side with clients of its own under a throwaway Redis namespace,
so it proves the *stored* credentials (the fleet's cached token or session would otherwise
answer for them) and never disturbs the workers' shared token, session or rate buckets. The
probe's HTTP exchanges are audited under the subject ``connection:<name>``
(``ledgerbridge explain connection:<name>`` shows them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from shared.connections import (
    AcumaticaTarget,
    Connection,
    FileTarget,
    ZuoraTarget,
    acumatica_settings,
    default_connection,
)
from shared.errors import ApiError
from shared.exchange import Exchange, audit_subject
from shared.ledger.errors import LedgerError
from shared.settings import ACUMATICA_ENDPOINTS, ZUORA_DATA_CENTRES, SettingsError, resolve_zuora_base_url

if TYPE_CHECKING:
    import redis

    from shared.ledger.models import AuditEvent, CloseRun, ConnectionRow, SyncRecord
    from shared.ledger.repo import Ledger

connection_app = typer.Typer(
    no_args_is_help=True,
    help="Connections: a Zuora tenant and its ERP target, stored in the ledger with encrypted secrets.",
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Bodies in the rich timeline are cut here unless --full (the JSON output is never cut).
BODY_PREVIEW_CHARS = 300
# A connection test should answer in seconds: few retries, short waits.
PROBE_TIMEOUT_SECONDS = 30.0


def register(app: typer.Typer, secrets_app: typer.Typer) -> None:
    """Add ``connection ...``, ``secrets rotate`` and ``explain`` to the ``ledgerbridge`` command."""
    app.add_typer(connection_app, name="connection")
    secrets_app.command("rotate")(secrets_rotate)
    app.command("explain")(explain)


# -- output and errors -----------------------------------------------------------------------------


def _out() -> Console:
    # Built per call, so COLUMNS and the current stdout are honoured (tests, pipes).
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _fail(message: str, code: int) -> typer.Exit:
    _err().print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


@contextmanager
def _usage_errors() -> Iterator[None]:
    """Configuration and ledger errors become a message and exit code 2 (the message says what to
    fix); nothing else is swallowed."""
    try:
        yield
    except SettingsError as exc:
        raise _fail(str(exc), 2) from None
    except LedgerError as exc:
        raise _fail(str(exc), 2) from None


def _ledger() -> Ledger:
    """The ledger, after checking its schema is at this release's head (else exit 2)."""
    from shared import ports
    from shared.ledger.migrate import check_up_to_date

    check_up_to_date(ports.settings().database_url)
    return ports.ledger()


def _iso(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- connection add --------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise _fail(
            f"connection name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (it is part of every Redis key and lock of the connection)",
            2,
        )
    return name


def _prompt_secret(label: str) -> str:
    value: str = typer.prompt(label, hide_input=True)
    if not value.strip():
        raise _fail(f"{label} must not be empty", 2)
    return value


def _http_url(value: str, option: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise _fail(f"{option} must be an http(s) URL, not {value!r}", 2)
    return value.rstrip("/")


def build_connection(
    name: str,
    *,
    zuora_url: str,
    zuora_client_id: str,
    zuora_client_secret: str,
    zuora_entity_id: str | None = None,
    zuora_requests_per_minute: int = 2500,
    zuora_max_concurrent: int = 20,
    erp: Literal["acumatica", "file"],
    acumatica: AcumaticaTarget | None = None,
    export_dir: Path | None = None,
) -> Connection:
    """A validated :class:`Connection` (ValueError names the option to fix)."""
    try:
        base_url = resolve_zuora_base_url(zuora_url)
    except ValueError as exc:
        raise ValueError(f"--zuora-url {exc}") from None
    zuora = ZuoraTarget(
        base_url=base_url,
        client_id=zuora_client_id,
        client_secret=zuora_client_secret,
        entity_id=zuora_entity_id or None,
        requests_per_minute=zuora_requests_per_minute,
        max_concurrent=zuora_max_concurrent,
    )
    if erp == "acumatica":
        if acumatica is None:
            raise ValueError("--erp acumatica needs --acumatica-url and its credentials")
        return Connection(name=name, zuora=zuora, erp_kind="acumatica", acumatica=acumatica)
    if export_dir is None:
        raise ValueError("--erp file needs --export-dir (the directory the GL files are written to)")
    # Stored absolute: workers, beat and the CLI do not share a working directory.
    return Connection(
        name=name, zuora=zuora, erp_kind="file", file=FileTarget(export_dir=export_dir.expanduser().resolve())
    )


@connection_app.command("add")
def connection_add(  # noqa: PLR0917 - typer turns each parameter into an option
    name: Annotated[
        str, typer.Argument(help="The connection's name (used in every key, lock and log line).")
    ],
    zuora_url: Annotated[
        str,
        typer.Option(
            "--zuora-url",
            help="Zuora REST root: an http(s) URL or a data centre ("
            + ", ".join(sorted(ZUORA_DATA_CENTRES))
            + ").",
        ),
    ],
    zuora_client_id: Annotated[str, typer.Option("--zuora-client-id", help="Zuora OAuth client id.")],
    erp: Annotated[
        Literal["acumatica", "file"],
        typer.Option("--erp", help="Where the data goes: acumatica, or file (a CSV/JSONL GL export)."),
    ],
    zuora_client_secret: Annotated[
        str | None,
        typer.Option(
            "--zuora-client-secret", help="Zuora OAuth client secret (prompted, hidden, when left out)."
        ),
    ] = None,
    zuora_entity_id: Annotated[
        str | None, typer.Option("--zuora-entity-id", help="Zuora entity id (multi-entity tenants).")
    ] = None,
    zuora_requests_per_minute: Annotated[
        int, typer.Option("--zuora-requests-per-minute", min=1, help="Fleet-wide Zuora request budget.")
    ] = 2500,
    zuora_max_concurrent: Annotated[
        int, typer.Option("--zuora-max-concurrent", min=1, help="Fleet-wide concurrent Zuora requests.")
    ] = 20,
    acumatica_url: Annotated[
        str | None, typer.Option("--acumatica-url", help="Acumatica instance URL (with the site path).")
    ] = None,
    acumatica_endpoint: Annotated[
        str,
        typer.Option(
            "--acumatica-endpoint", help="Contract endpoint: " + ", ".join(ACUMATICA_ENDPOINTS) + "."
        ),
    ] = "Default/24.200.001",
    acumatica_tenant: Annotated[
        str | None, typer.Option("--acumatica-tenant", help="Acumatica tenant (company) login name.")
    ] = None,
    acumatica_username: Annotated[
        str | None, typer.Option("--acumatica-username", help="Acumatica API user.")
    ] = None,
    acumatica_password: Annotated[
        str | None,
        typer.Option("--acumatica-password", help="That user's password (prompted, hidden, when left out)."),
    ] = None,
    acumatica_branch: Annotated[
        str | None, typer.Option("--acumatica-branch", help="Branch ID to sign in to and post under.")
    ] = None,
    acumatica_client_id: Annotated[
        str | None,
        typer.Option(
            "--acumatica-client-id", help="OAuth client id (<GUID>@<Tenant>) to sign in with OAuth."
        ),
    ] = None,
    acumatica_client_secret: Annotated[
        str | None,
        typer.Option(
            "--acumatica-client-secret",
            help="OAuth client secret (prompted, hidden, with --acumatica-client-id).",
        ),
    ] = None,
    acumatica_requests_per_minute: Annotated[
        int,
        typer.Option("--acumatica-requests-per-minute", min=1, help="The licence's API requests per minute."),
    ] = 150,
    acumatica_max_concurrent: Annotated[
        int, typer.Option("--acumatica-max-concurrent", min=1, help="The licence's concurrent API requests.")
    ] = 2,
    acumatica_max_sessions: Annotated[
        int, typer.Option("--acumatica-max-sessions", min=1, help="API sessions ledgerbridge may hold.")
    ] = 2,
    export_dir: Annotated[
        Path | None, typer.Option("--export-dir", help="With --erp file: the directory for the GL files.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a stored connection of the same name.")
    ] = False,
) -> None:
    """Store a connection (a Zuora tenant and its ERP target) in the ledger, secrets encrypted
    with LEDGERBRIDGE_SECRET_KEY. Secrets left out are prompted for with hidden input, so they
    stay out of the shell history. Check it afterwards with `ledgerbridge connection test NAME`."""
    _check_name(name)
    if erp == "acumatica" and acumatica_endpoint not in ACUMATICA_ENDPOINTS:
        raise _fail(f"--acumatica-endpoint must be one of: {', '.join(ACUMATICA_ENDPOINTS)}", 2)
    if erp == "file" and any((acumatica_url, acumatica_username, acumatica_client_id)):
        raise _fail("--acumatica-* options need --erp acumatica", 2)
    if erp == "acumatica" and export_dir is not None:
        raise _fail("--export-dir needs --erp file", 2)
    if erp == "acumatica" and not acumatica_url:
        raise _fail("--erp acumatica needs --acumatica-url", 2)
    if erp == "acumatica" and not (acumatica_username or acumatica_client_id):
        raise _fail("--erp acumatica needs --acumatica-username (and a password) or --acumatica-client-id", 2)
    if erp == "file" and export_dir is None:
        raise _fail("--erp file needs --export-dir (the directory the GL files are written to)", 2)
    # Validate every option before prompting, so a typo does not cost the person their secrets.
    zuora_base = zuora_url
    try:
        zuora_base = resolve_zuora_base_url(zuora_url)
    except ValueError as exc:
        raise _fail(f"--zuora-url {exc}", 2) from None
    acumatica_base = _http_url(acumatica_url, "--acumatica-url") if acumatica_url else None

    zuora_secret = zuora_client_secret or _prompt_secret("Zuora client secret")
    acumatica_target = None
    if erp == "acumatica":
        assert acumatica_base is not None
        client_secret = None
        if acumatica_client_id:
            client_secret = acumatica_client_secret or _prompt_secret("Acumatica OAuth client secret")
        password = None
        if acumatica_username:
            password = acumatica_password or _prompt_secret(f"Acumatica password for {acumatica_username}")
        acumatica_target = AcumaticaTarget(
            url=acumatica_base,
            endpoint=acumatica_endpoint,
            username=acumatica_username,
            password=password,
            tenant=acumatica_tenant,
            branch=acumatica_branch,
            client_id=acumatica_client_id,
            client_secret=client_secret,
            requests_per_minute=acumatica_requests_per_minute,
            max_concurrent=acumatica_max_concurrent,
            max_sessions=acumatica_max_sessions,
        )
    try:
        conn = build_connection(
            name,
            zuora_url=zuora_base,
            zuora_client_id=zuora_client_id,
            zuora_client_secret=zuora_secret,
            zuora_entity_id=zuora_entity_id,
            zuora_requests_per_minute=zuora_requests_per_minute,
            zuora_max_concurrent=zuora_max_concurrent,
            erp=erp,
            acumatica=acumatica_target,
            export_dir=export_dir,
        )
    except ValueError as exc:
        raise _fail(str(exc), 2) from None

    from shared import ports

    with _usage_errors():
        box = ports.secret_box()
        ledger = _ledger()
        existed = any(row.name == name for row in ledger.list_connections())
        ledger.add_connection(conn, box, replace=replace)
    verb = "replaced" if existed else "added"
    _out().print(escape(f"connection {name} {verb} ({conn.zuora.base_url} -> {_erp_target(conn)})"))
    settings = ports.settings()
    if settings.connection == name and settings.zuora_base_url is not None:
        _err().print(
            f"[yellow]note:[/] the environment (LEDGERBRIDGE_CONNECTION={escape(name)} and "
            "LEDGERBRIDGE_ZUORA_*) also defines this connection, and the environment wins: processes "
            "started with it will not use the stored one"
        )


def _erp_target(conn: Connection) -> str:
    if conn.acumatica is not None:
        a = conn.acumatica
        return f"acumatica {a.url} {a.endpoint}" + (f" tenant {a.tenant}" if a.tenant else "")
    assert conn.file is not None
    return f"file {conn.file.export_dir}"


# -- connection list / remove ----------------------------------------------------------------------


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
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def _environment_summary(conn: Connection) -> dict[str, Any]:
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
        "created_at": None,
        "updated_at": None,
    }


@connection_app.command("list")
def connection_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (never any secret).")] = False,
) -> None:
    """List the connections: the stored ones and the one the environment defines. No secrets."""
    from shared import ports

    with _usage_errors():
        rows = [connection_summary(row) for row in _ledger().list_connections()]
        settings = ports.settings()
    environment_problem = None
    if settings.zuora_base_url is not None:
        try:
            env_conn = default_connection(settings)
        except SettingsError as exc:
            environment_problem = str(exc)
        else:
            # The environment wins for its name (ports.connection): show it in place of the row.
            rows = [r for r in rows if r["name"] != env_conn.name]
            rows.append(_environment_summary(env_conn))
            rows.sort(key=lambda r: str(r["name"]))
    if as_json:
        _out().print_json(json.dumps(rows))
        return
    table = Table(title="connections", title_justify="left")
    for column in ("name", "source", "zuora", "client id", "erp", "target", "updated"):
        table.add_column(column, overflow="fold")
    for r in rows:
        if r["erp"] == "acumatica" and r["acumatica"]:
            a = r["acumatica"]
            who = a.get("username") or a.get("client_id") or ""
            target = f"{a.get('url')} {a.get('endpoint')}" + (f" {a['tenant']}" if a.get("tenant") else "")
            target += f" ({who})" if who else ""
        else:
            target = str(r["export_dir"] or "")
        zuora = r["zuora_base_url"] + (f" entity {r['zuora_entity_id']}" if r["zuora_entity_id"] else "")
        cells = (r["name"], r["source"], zuora, r["zuora_client_id"], r["erp"], target)
        table.add_row(*(escape(str(c)) for c in cells), (r["updated_at"] or "")[:19].replace("T", " "))
    out = _out()
    if rows:
        out.print(table)
    else:
        out.print("no connections: add one with `ledgerbridge connection add`")
    if environment_problem:
        _err().print(
            f"[yellow]the environment's default connection is incomplete:[/] {escape(environment_problem)}"
        )


@connection_app.command("remove")
def connection_remove(
    name: Annotated[str, typer.Argument(help="The stored connection to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a stored connection and its secrets. Its records, marks, close runs and audit trail
    stay in the ledger (adding the connection again picks them up)."""
    with _usage_errors():
        ledger = _ledger()
        if not any(row.name == name for row in ledger.list_connections()):
            raise _fail(f"no stored connection named {name!r} (see `ledgerbridge connection list`)", 2)
        if not yes:
            typer.confirm(f"Remove connection {name} and its stored secrets?", abort=True)
        removed = ledger.remove_connection(name)
    if not removed:  # removed by someone else between the check and now
        raise _fail(f"no stored connection named {name!r}", 2)
    _out().print(f"connection {name} removed (its records and audit trail are kept)")


# -- connection test -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Check:
    """One probe of one side of a connection."""

    side: str
    name: str
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
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
    fernet: Any = None,
    mapping_file: Path | None = None,
) -> list[Check]:
    """Acumatica: sign in with the stored credentials (a new session, logged out afterwards),
    find the endpoint among those ``GET /entity`` lists, then read reference data - the mapping
    file's accounts and currencies when one is configured, else the currency list."""
    from shared.erp.acumatica import AcumaticaErp
    from shared.erp.acumatica_client import AcumaticaClient
    from shared.erp.acumatica_policy import RetryPolicy
    from shared.erp.acumatica_session import session_key

    # The fleet keeps the newest OAuth refresh token in Redis and Acumatica rotates it on every
    # use (acumatica-api.md section 2.2): the probe starts from the fleet's and hands back the
    # new one, so probing never strands the workers with a spent token.
    fleet_refresh = f"ledgerbridge:{connection}:acumatica:refresh_token"
    probe_refresh = f"ledgerbridge:{namespace}:acumatica:refresh_token"
    if target.client_id:
        stored = redis.get(fleet_refresh)
        if stored is not None:
            redis.set(probe_refresh, stored, ex=3600)

    client = AcumaticaClient(
        target,
        connection=namespace,
        redis=redis,
        audit=audit,
        fernet=fernet,
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
    fernet: Any = None,
    mapping_file: Path | None = None,
) -> list[Check]:
    """Every check of ``conn``, both sides, each side's failures reported (never raised). The
    probe's Redis keys are deleted afterwards."""
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
                    fernet=fernet,
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


@connection_app.command("test")
def connection_test(
    name: Annotated[
        str | None, typer.Argument(help="Connection name (default: LEDGERBRIDGE_CONNECTION).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check a connection end to end: a Zuora OAuth token and a read of accounting periods; the
    ERP - Acumatica sign-in, its endpoint and reference data, or the export directory is writable.
    Exit code 0 when every check passed, 1 otherwise."""
    from cryptography.fernet import Fernet

    from shared import ports

    with _usage_errors():
        settings = ports.settings()
        if settings.zuora_base_url is None or (name and name != settings.connection):
            _ledger()  # a stored connection: the schema must be there
        conn = ports.connection(name)
        key = settings.secret_key
        fernet = Fernet(key.get_secret_value().split(",")[0].strip().encode()) if key else None
        ledger = _ledger_or_none()
        checks = run_checks(
            conn, redis=ports.redis_client(), ledger=ledger, fernet=fernet, mapping_file=settings.mapping_file
        )
    ok = all(c.ok for c in checks)
    if as_json:
        _out().print_json(
            json.dumps({"connection": conn.name, "ok": ok, "checks": [c.as_json() for c in checks]})
        )
    else:
        table = Table(title=escape(f"connection {conn.name}"), title_justify="left")
        for column in ("side", "check", "result", "detail"):
            table.add_column(column, overflow="fold")
        for c in checks:
            table.add_row(
                escape(c.side),
                escape(c.name),
                "[green]ok[/]" if c.ok else "[bold red]failed[/]",
                escape(c.detail),
            )
        _out().print(table)
    raise typer.Exit(0 if ok else 1)


def _ledger_or_none() -> Ledger | None:
    """The ledger for auditing the probe, or None when it has no schema (the probe still runs)."""
    from shared import ports
    from shared.ledger.errors import SchemaOutOfDate
    from shared.ledger.migrate import check_up_to_date

    try:
        check_up_to_date(ports.settings().database_url)
    except SchemaOutOfDate:
        return None
    return ports.ledger()


# -- secrets rotate --------------------------------------------------------------------------------


def secrets_rotate() -> None:
    """Re-encrypt every stored connection's secrets with the first key of LEDGERBRIDGE_SECRET_KEY.

    The procedure, with no downtime:

    1. `ledgerbridge secrets generate-key` prints NEWKEY.

    2. Set LEDGERBRIDGE_SECRET_KEY="NEWKEY,OLDKEY" for every process (workers, beat, web, the
    shell you run this in) and restart them: the first key encrypts, every listed key decrypts.

    3. `ledgerbridge secrets rotate` re-encrypts every connection with NEWKEY, all or nothing,
    and prints how many.

    4. Set LEDGERBRIDGE_SECRET_KEY="NEWKEY" everywhere and restart. The Acumatica session
    cached in Redis is sealed with the first key only, so after step 2 the workers sign in once
    more; nothing else is lost.
    """
    from shared import ports

    with _usage_errors():
        box = ports.secret_box()
        key = ports.settings().secret_key
        keys = [k for k in (key.get_secret_value() if key else "").split(",") if k.strip()]
        count = _ledger().rotate_secrets(box)
    out = _out()
    out.print(
        f"re-encrypted the secrets of {count} connection(s) with the first key of LEDGERBRIDGE_SECRET_KEY"
    )
    if len(keys) < 2:
        out.print(
            "note: LEDGERBRIDGE_SECRET_KEY holds a single key, so nothing was rotated away from; to "
            'rotate, set it to "NEWKEY,OLDKEY" first (see `ledgerbridge secrets rotate --help`)'
        )
    else:
        out.print(
            f"now drop the {len(keys) - 1} old key(s): set LEDGERBRIDGE_SECRET_KEY to the first key alone "
            "everywhere and restart the processes"
        )


# -- explain ---------------------------------------------------------------------------------------

SUBJECT_RE = re.compile(r"^([a-z_]+):(.+)$")


def _record_json(record: SyncRecord, full: bool) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    if not full:
        data.pop("payload", None)
        data.pop("posted_payload", None)
    data["subject"] = record.subject
    return data


def _close_json(run: CloseRun) -> dict[str, Any]:
    data = run.model_dump(mode="json")
    data["subject"] = f"close:{run.id}"
    return data


def _event_json(event: AuditEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")


def gather(ledger: Ledger, connection: str, query: str) -> dict[str, Any]:
    """What the ledger knows about ``query`` on ``connection``: matching records (by Zuora id,
    number or ERP reference), close runs (``close:<id>``) or a raw audit subject
    (``invoice:<id>``, ``connection:<name>``), each with its timeline, oldest first."""
    from shared.ledger.errors import RecordNotFound

    result: dict[str, Any] = {"query": query, "connection": connection, "records": [], "close_runs": []}
    subjects: list[str] = []
    match = SUBJECT_RE.match(query)
    if match and match.group(1) == "close":
        try:
            run = ledger.get_close_run(int(match.group(2)))
        except (ValueError, RecordNotFound):
            run = None
        if run is not None:
            result["close_runs"].append(
                (run, ledger.timeline(f"close:{run.id}"), ledger.records_for_close_run(run.id or 0))
            )
        return result
    records = ledger.find_records(connection, query)
    if not records and match:
        record = ledger.get_record(connection, match.group(1), match.group(2))
        records = [record] if record is not None else []
        if not records:
            subjects.append(query)
    for record in records:
        result["records"].append((record, ledger.timeline(record.subject)))
    result["subjects"] = [(s, ledger.timeline(s)) for s in subjects]
    return result


def _preview(text: str | None, full: bool) -> str:
    if text is None:
        return ""
    if full or len(text) <= BODY_PREVIEW_CHARS:
        return text
    return text[:BODY_PREVIEW_CHARS] + f"... [{len(text) - BODY_PREVIEW_CHARS} more chars; --full shows all]"


def _transition_style(message: str) -> str:
    target = message.split(":", 1)[0].rsplit("->", maxsplit=1)[-1].strip().split(" ")[0]
    return {
        "failed": "bold red",
        "parked": "bold yellow",
        "posted": "green",
        "marked": "bold green",
        "posting": "cyan",
    }.get(target, "")


def render_timeline(console: Console, events: list[AuditEvent], full: bool) -> None:
    """Print a timeline: transitions, notes and HTTP attempts, oldest first."""
    if not events:
        console.print(
            "  (no audit events; they may have been pruned after LEDGERBRIDGE_AUDIT_RETENTION_DAYS)"
        )
        return
    for event in events:
        at = event.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        line = Text(f"  {at}  ")
        if event.kind == "http":
            status = str(event.status) if event.status is not None else "no response"
            ok = event.status is not None and event.status < 400
            line.append(f"{event.api or 'http'} ", style="bold")
            line.append(f"{event.method} {event.url} -> ")
            line.append(status, style="green" if ok else "bold red")
            duration = f" {event.duration_ms:.0f} ms" if event.duration_ms is not None else ""
            extras = [f"attempt {event.attempt}"] if event.attempt else []
            if event.request_id:
                extras.append(f"request id {event.request_id}")
            line.append(f"{duration}" + (f" ({', '.join(extras)})" if extras else ""))
            console.print(line)
            if event.message:
                console.print(Text(f"      error: {event.message}", style="red"))
            if event.request_body:
                console.print(Text(f"      request:  {_preview(event.request_body, full)}", style="dim"))
            if event.response_body:
                console.print(Text(f"      response: {_preview(event.response_body, full)}", style="dim"))
            if full and event.response_headers:
                console.print(
                    Text(f"      response headers: {json.dumps(event.response_headers)}", style="dim")
                )
        elif event.kind == "transition":
            line.append("state ", style="bold")
            line.append(event.message or "", style=_transition_style(event.message or ""))
            console.print(line)
        else:
            line.append("note ", style="bold")
            line.append(event.message or "")
            console.print(line)


def _summary_table(rows: list[tuple[str, str]], title: str) -> Table:
    table = Table(title=escape(title), title_justify="left", show_header=False, box=None)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, escape(value))
    return table


def _record_rows(record: SyncRecord) -> list[tuple[str, str]]:
    rows = [
        ("type", record.object_type),
        ("zuora id", record.zuora_id),
        ("number", record.zuora_number or ""),
        ("state", record.state),
        ("attempts", str(record.attempts)),
        ("last error", record.last_error or ""),
        (
            "erp ref",
            (record.erp_ref or "") + (" (released)" if record.erp_ref and record.erp_released else ""),
        ),
        ("posted at", _iso(record.posted_at)),
        ("marked at", _iso(record.marked_at)),
        ("period", record.period_name or ""),
        ("next attempt", _iso(record.next_attempt_at)),
        ("source", record.source),
        ("account", record.account_id or ""),
        ("close run", str(record.close_run_id) if record.close_run_id is not None else ""),
        ("zuora updated", _iso(record.zuora_updated)),
        ("first seen", _iso(record.created_at)),
    ]
    return [(k, v) for k, v in rows if v != "" or k in ("state", "attempts", "erp ref", "last error")]


def _close_rows(run: CloseRun) -> list[tuple[str, str]]:
    return [
        ("period", run.period_name),
        ("kind", "dry run" if run.dry_run else "close"),
        ("status", run.status),
        ("step", run.step),
        ("period id", run.period_id or ""),
        ("journal run", run.journal_run_number or ""),
        ("error", run.error or ""),
        ("started", _iso(run.created_at)),
        ("finished", _iso(run.finished_at)),
    ]


def explain(
    number_or_id: Annotated[
        str,
        typer.Argument(
            help="A Zuora id or number (INV00001234, JE-00000012), an ERP reference, close:<run id>, "
            "or an audit subject such as invoice:<zuora id>."
        ),
    ],
    connection: Annotated[
        str | None,
        typer.Option("--connection", "-c", help="Connection name (default: LEDGERBRIDGE_CONNECTION)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (bodies never cut).")] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Show whole request/response bodies, headers and payloads.")
    ] = False,
) -> None:
    """Explain a record: where it is (state, attempts, last error, ERP reference, when it was
    posted and marked) and its whole timeline from the audit trail - every state change and every
    HTTP attempt with status, duration, request id and the (redacted) bodies.
    Exit code 1 when the ledger knows nothing about it."""
    from shared import ports

    with _usage_errors():
        name = connection or ports.settings().connection
        found = gather(_ledger(), name, number_or_id)
    subjects: list[tuple[str, list[AuditEvent]]] = [
        (s, events) for s, events in found.get("subjects", []) if events
    ]
    if not found["records"] and not found["close_runs"] and not subjects:
        raise _fail(
            f"nothing in the ledger for {number_or_id!r} on connection {name} (tried Zuora id, number, ERP "
            "reference; a close run is close:<id>)",
            1,
        )
    if as_json:
        payload = {
            "query": number_or_id,
            "connection": name,
            "records": [
                {**_record_json(record, full), "timeline": [_event_json(e) for e in events]}
                for record, events in found["records"]
            ],
            "close_runs": [
                {
                    **_close_json(run),
                    "records": [_record_json(r, full) for r in records],
                    "timeline": [_event_json(e) for e in events],
                }
                for run, events, records in found["close_runs"]
            ],
            "subjects": [
                {"subject": s, "timeline": [_event_json(e) for e in events]} for s, events in subjects
            ],
        }
        _out().print_json(json.dumps(payload, default=str))
        return
    out = _out()
    for record, events in found["records"]:
        out.print(
            _summary_table(
                _record_rows(record), f"{record.object_type} {record.zuora_number or record.zuora_id}"
            )
        )
        if full and record.posted_payload is not None:
            out.print(
                Text(f"  sent to the ERP: {json.dumps(record.posted_payload, default=str)}", style="dim")
            )
        out.print("[bold]timeline[/]")
        render_timeline(out, events, full)
        out.print()
    for run, events, records in found["close_runs"]:
        out.print(_summary_table(_close_rows(run), f"close run {run.id} ({run.connection})"))
        if records:
            table = Table(title="journal entries", title_justify="left")
            for column in ("number", "state", "erp ref", "attempts", "last error"):
                table.add_column(column, overflow="fold")
            for r in records:
                table.add_row(
                    escape(r.zuora_number or r.zuora_id),
                    r.state,
                    escape(r.erp_ref or ""),
                    str(r.attempts),
                    escape(r.last_error or ""),
                )
            out.print(table)
        out.print("[bold]timeline[/]")
        render_timeline(out, events, full)
        out.print()
    for subject, events in subjects:
        out.print(f"[bold]timeline of {escape(subject)}[/]")
        render_timeline(out, events, full)
        out.print()
