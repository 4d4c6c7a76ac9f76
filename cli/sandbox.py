"""``ledgerbridge sandbox zuora|acumatica``: the local sandboxes as real HTTP servers.

The sandboxes are a distribution of their own (``ledgerbridge-sandbox``, ``sandbox/`` in the
clone), not part of the product: this is the only module of the CLI that imports them, inside
the functions that need them (the ``sandbox`` commands, and :func:`sandbox_credentials` for
``ledgerbridge demo``), so every other command works without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from cli.output import fail

SANDBOX_MISSING = "the sandboxes are not installed ({missing}): run `pip install -e ./sandbox` in the clone"


def register(app: typer.Typer) -> None:
    """Add the ``sandbox`` group to the ``ledgerbridge`` command."""
    group = typer.Typer(no_args_is_help=True, help="Local Zuora and Acumatica sandboxes (real HTTP servers).")
    group.command("zuora")(sandbox_zuora)
    group.command("acumatica")(sandbox_acumatica)
    app.add_typer(group, name="sandbox")


def require_sandbox() -> None:
    """Exit 2 with the command that installs the sandboxes when they (or what they need) are missing."""
    try:
        import sandbox.acumatica.app
        import sandbox.zuora.app  # noqa: F401 - imported to prove the sandboxes load
    except ModuleNotFoundError as exc:
        raise fail(SANDBOX_MISSING.format(missing=f"no module {exc.name!r}"), 2) from None


@dataclass(frozen=True)
class SandboxCredentials:
    """What the sandboxes accept when started without credentials of their own."""

    zuora_client_id: str
    zuora_client_secret: str
    acumatica_tenant: str
    acumatica_username: str
    acumatica_password: str


def sandbox_credentials() -> SandboxCredentials:
    """The sandboxes' default credentials (ModuleNotFoundError when the sandboxes are missing:
    :func:`require_sandbox` first, for the message)."""
    from sandbox import acumatica, zuora

    return SandboxCredentials(
        zuora_client_id=zuora.DEFAULT_CLIENT_ID,
        zuora_client_secret=zuora.DEFAULT_CLIENT_SECRET,
        acumatica_tenant=acumatica.DEFAULT_TENANT,
        acumatica_username=acumatica.DEFAULT_USERNAME,
        acumatica_password=acumatica.DEFAULT_PASSWORD,
    )


def sandbox_zuora(
    port: Annotated[int, typer.Option(help="Port to listen on (loopback).")] = 8081,
    seed: Annotated[int, typer.Option(help="Seed for the generated data.")] = 1,
    client_id: Annotated[str | None, typer.Option(help="The only OAuth client id accepted.")] = None,
    client_secret: Annotated[str | None, typer.Option(help="The only OAuth client secret accepted.")] = None,
) -> None:
    """Serve the Zuora sandbox until interrupted."""
    require_sandbox()
    from sandbox.zuora import app as zuora_sandbox

    zuora_sandbox.run(port=port, seed=seed, client_id=client_id, client_secret=client_secret)


def sandbox_acumatica(
    port: Annotated[int, typer.Option(help="Port to listen on (loopback).")] = 8082,
    endpoint: Annotated[str, typer.Option(help="The only endpoint version served.")] = "Default/24.200.001",
    username: Annotated[str | None, typer.Option(help="The only user accepted.")] = None,
    password: Annotated[str | None, typer.Option(help="That user's password.")] = None,
    tenant: Annotated[str | None, typer.Option(help="The tenant name.")] = None,
) -> None:
    """Serve the Acumatica sandbox until interrupted."""
    require_sandbox()
    from sandbox.acumatica import app as acumatica_sandbox

    credentials = {"username": username, "password": password, "tenant": tenant}
    acumatica_sandbox.run(
        port=port, endpoint=endpoint, **{k: v for k, v in credentials.items() if v is not None}
    )
