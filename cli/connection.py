"""``ledgerbridge connection add|list|remove|test``: the connections stored in the ledger.

A connection is a Zuora tenant and its ERP target, stored with its secrets encrypted at rest
(Fernet, ``LEDGERBRIDGE_SECRET_KEY``). Secrets not given as options are prompted for with hidden
input, so they never land in the shell history. The environment's ``LEDGERBRIDGE_*`` variables
still define the default connection; a stored connection of the same name is shadowed by it.

``connection test`` runs :func:`shared.connection_probe.run_checks` and prints its checks; the
probe's HTTP exchanges are audited under the subject ``connection:<name>``
(``ledgerbridge explain connection:<name>`` shows them).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape

from cli.callout_secret import callout_secret
from cli.common import ledger_at_head
from cli.output import err, fail, out, print_json, table, usage_errors
from shared.connections import AcumaticaTarget, Connection, FileTarget, ZuoraTarget, approval_mode
from shared.settings import ACUMATICA_ENDPOINTS, ZUORA_DATA_CENTRES, resolve_zuora_base_url

if TYPE_CHECKING:
    from shared.ledger.repo import Ledger

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def register(app: typer.Typer) -> None:
    """Add the ``connection`` group to the ``ledgerbridge`` command."""
    group = typer.Typer(
        no_args_is_help=True,
        help="Connections: a Zuora tenant and its ERP target, stored in the ledger with encrypted secrets.",
    )
    group.command("add")(connection_add)
    group.command("list")(connection_list)
    group.command("remove")(connection_remove)
    group.command("test")(connection_test)
    group.command("callout-secret")(callout_secret)
    group.command("approval")(connection_approval)
    app.add_typer(group, name="connection")


# -- connection add --------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise fail(
            f"connection name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (it is part of every Redis key and lock of the connection)",
            2,
        )
    return name


def _prompt_secret(label: str) -> str:
    value: str = typer.prompt(label, hide_input=True)
    if not value.strip():
        raise fail(f"{label} must not be empty", 2)
    return value


def _closed_period(value: str) -> Literal["park", "next_open"]:
    if value == "park":
        return "park"
    if value == "next_open":
        return "next_open"
    raise fail(f"--acumatica-closed-period must be park or next_open, not {value!r}", 2)


def _http_url(value: str, option: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise fail(f"{option} must be an http(s) URL, not {value!r}", 2)
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
    acumatica_closed_period: Annotated[
        str,
        typer.Option(
            "--acumatica-closed-period",
            help="A document whose financial period is closed in Acumatica: park (a person opens the "
            "period and replays it) or next_open (posted into the next open period, with a note).",
        ),
    ] = "park",
    export_dir: Annotated[
        Path | None, typer.Option("--export-dir", help="With --erp file: the directory for the GL files.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a stored connection of the same name.")
    ] = False,
    approval: Annotated[
        str,
        typer.Option(
            "--approval",
            help="Maker-checker: none, close (each close waits after its check for an approver who did "
            "not start it) or all.",
        ),
    ] = "none",
) -> None:
    """Store a connection (a Zuora tenant and its ERP target) in the ledger, secrets encrypted
    with LEDGERBRIDGE_SECRET_KEY. Secrets left out are prompted for with hidden input, so they
    stay out of the shell history. Check it afterwards with `ledgerbridge connection test NAME`."""
    _check_name(name)
    try:
        approval_rule = approval_mode(approval)
    except ValueError as exc:
        raise fail(f"--{exc}", 2) from None
    if erp == "acumatica" and acumatica_endpoint not in ACUMATICA_ENDPOINTS:
        raise fail(f"--acumatica-endpoint must be one of: {', '.join(ACUMATICA_ENDPOINTS)}", 2)
    if erp == "file" and any((acumatica_url, acumatica_username, acumatica_client_id)):
        raise fail("--acumatica-* options need --erp acumatica", 2)
    if erp == "acumatica" and export_dir is not None:
        raise fail("--export-dir needs --erp file", 2)
    if erp == "acumatica" and not acumatica_url:
        raise fail("--erp acumatica needs --acumatica-url", 2)
    if erp == "acumatica" and not (acumatica_username or acumatica_client_id):
        raise fail("--erp acumatica needs --acumatica-username (and a password) or --acumatica-client-id", 2)
    if erp == "file" and export_dir is None:
        raise fail("--erp file needs --export-dir (the directory the GL files are written to)", 2)
    # Validate every option before prompting, so a typo does not cost the person their secrets.
    zuora_base = zuora_url
    try:
        zuora_base = resolve_zuora_base_url(zuora_url)
    except ValueError as exc:
        raise fail(f"--zuora-url {exc}", 2) from None
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
            closed_period=_closed_period(acumatica_closed_period),
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
        raise fail(str(exc), 2) from None
    conn = dataclasses.replace(conn, approval=approval_rule)

    from shared import ports

    with usage_errors():
        box = ports.secret_box()
        ledger = ledger_at_head()
        existed = any(row.name == name for row in ledger.list_connections())
        ledger.add_connection(conn, box, replace=replace)
    verb = "replaced" if existed else "added"
    out().print(escape(f"connection {name} {verb} ({conn.zuora.base_url} -> {_erp_target(conn)})"))
    settings = ports.settings()
    if settings.connection == name and settings.zuora_base_url is not None:
        err().print(
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


def connection_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (never any secret).")] = False,
) -> None:
    """List the connections: the stored ones and the one the environment defines. No secrets."""
    from shared import ports
    from shared.connection_list import list_connections

    with usage_errors():
        found = list_connections(ledger_at_head(), ports.settings())
    rows, environment_problem = found.rows, found.environment_problem
    if as_json:
        print_json(rows)
        return
    listed = table(
        "connections",
        ("name", "source", "zuora", "client id", "erp", "target", "approval", "updated"),
        overflow=True,
    )
    for r in rows:
        if r["erp"] == "acumatica" and r["acumatica"]:
            a = r["acumatica"]
            who = a.get("username") or a.get("client_id") or ""
            target = f"{a.get('url')} {a.get('endpoint')}" + (f" {a['tenant']}" if a.get("tenant") else "")
            target += f" ({who})" if who else ""
        else:
            target = str(r["export_dir"] or "")
        zuora = r["zuora_base_url"] + (f" entity {r['zuora_entity_id']}" if r["zuora_entity_id"] else "")
        cells = (r["name"], r["source"], zuora, r["zuora_client_id"], r["erp"], target, r["approval"])
        listed.add_row(*(escape(str(c)) for c in cells), (r["updated_at"] or "")[:19].replace("T", " "))
    if rows:
        out().print(listed)
    else:
        out().print("no connections: add one with `ledgerbridge connection add`")
    if environment_problem:
        err().print(
            f"[yellow]the environment's default connection is incomplete:[/] {escape(environment_problem)}"
        )


def connection_remove(
    name: Annotated[str, typer.Argument(help="The stored connection to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a stored connection and its secrets. Its records, marks, close runs and audit trail
    stay in the ledger (adding the connection again picks them up)."""
    with usage_errors():
        ledger = ledger_at_head()
        if not any(row.name == name for row in ledger.list_connections()):
            raise fail(f"no stored connection named {name!r} (see `ledgerbridge connection list`)", 2)
        if not yes:
            typer.confirm(f"Remove connection {name} and its stored secrets?", abort=True)
        removed = ledger.remove_connection(name)
    if not removed:  # removed by someone else between the check and now
        raise fail(f"no stored connection named {name!r}", 2)
    out().print(f"connection {name} removed (its records and audit trail are kept)")


def connection_test(
    name: Annotated[
        str | None, typer.Argument(help="Connection name (default: LEDGERBRIDGE_CONNECTION).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check a connection end to end: a Zuora OAuth token and a read of accounting periods; the
    ERP - Acumatica sign-in, its endpoint and reference data, or the export directory is writable.
    Exit code 0 when every check passed, 1 otherwise."""
    from shared import ports
    from shared.connection_probe import run_checks

    with usage_errors():
        settings = ports.settings()
        if settings.zuora_base_url is None or (name and name != settings.connection):
            ledger_at_head()  # a stored connection: the schema must be there
        conn = ports.connection(name)
        ledger = _ledger_or_none()
        oauth = conn.acumatica is not None and bool(conn.acumatica.client_id)
        checks = run_checks(
            conn,
            redis=ports.redis_client(),
            ledger=ledger,
            cipher=ports.cipher(),
            # The probe rotates the fleet's refresh token: the new one is stored where the fleet's is.
            refresh_tokens=ports.refresh_token_store(conn.name) if ledger is not None and oauth else None,
            mapping_file=settings.mapping_file,
        )
    ok = all(c.ok for c in checks)
    if as_json:
        print_json({"connection": conn.name, "ok": ok, "checks": [c.as_dict() for c in checks]})
    else:
        report = table(
            escape(f"connection {conn.name}"), ("side", "check", "result", "detail"), overflow=True
        )
        for c in checks:
            report.add_row(
                escape(c.side),
                escape(c.name),
                "[green]ok[/]" if c.ok else "[bold red]failed[/]",
                escape(c.detail),
            )
        out().print(report)
    raise typer.Exit(0 if ok else 1)


def _ledger_or_none() -> Ledger | None:
    """The ledger for auditing the probe, or None when it has no schema (the probe still runs)."""
    from shared.ledger.errors import SchemaOutOfDate

    try:
        return ledger_at_head()
    except SchemaOutOfDate:
        return None


def connection_approval(
    name: Annotated[str, typer.Argument(help="A stored connection.")],
    mode: Annotated[str, typer.Argument(help="none, close or all.")],
) -> None:
    """Set a stored connection's maker-checker rule: with close (or all), each close stops after its
    check until an approver who did not start it approves (`ledgerbridge close-approve RUN`, or the
    console). Closes already waiting keep waiting; a close started afterwards follows the new rule."""
    from shared import ports

    try:
        rule = approval_mode(mode)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    with usage_errors():
        box = ports.secret_box()
        ledger = ledger_at_head()
        conn = ledger.get_connection(name, box)
        ledger.add_connection(dataclasses.replace(conn, approval=rule), box, replace=True)
        ledger.note(f"connection:{name}", f"approval set to {rule} (was {conn.approval})", name)
    out().print(escape(f"connection {name}: approval {rule} (was {conn.approval})"))
