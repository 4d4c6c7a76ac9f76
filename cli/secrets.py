"""``ledgerbridge secrets generate-key|rotate``: the keys that encrypt secrets at rest."""

from __future__ import annotations

import typer

from cli.common import ledger_at_head
from cli.output import out, usage_errors


def register(app: typer.Typer) -> None:
    """Add the ``secrets`` group to the ``ledgerbridge`` command."""
    group = typer.Typer(no_args_is_help=True, help="Encryption of secrets at rest.")
    group.command("generate-key")(secrets_generate_key)
    group.command("rotate")(secrets_rotate)
    app.add_typer(group, name="secrets")


def secrets_generate_key() -> None:
    """Print a new Fernet key for LEDGERBRIDGE_SECRET_KEY."""
    from cryptography.fernet import Fernet

    out().print(Fernet.generate_key().decode())


def secrets_rotate() -> None:
    """Re-encrypt every stored connection's secrets with the first key of LEDGERBRIDGE_SECRET_KEY.

    The procedure, with no downtime:

    1. `ledgerbridge secrets generate-key` prints NEWKEY.

    2. Set LEDGERBRIDGE_SECRET_KEY="NEWKEY,OLDKEY" for every process (workers, beat, web, the
    shell you run this in) and restart them: the first key encrypts, every listed key decrypts.

    3. `ledgerbridge secrets rotate` re-encrypts every connection's secrets and every stored ERP
    refresh token with NEWKEY (each all or nothing; safe to run again) and prints how many.

    4. Set LEDGERBRIDGE_SECRET_KEY="NEWKEY" everywhere and restart. What Redis holds (the shared
    Acumatica session and a copy of the refresh token) may still be sealed with OLDKEY: the
    workers then sign in once more, with the refresh token the ledger keeps; nothing is lost.
    """
    from shared import ports
    from shared.cipher import listed_keys

    with usage_errors():
        box = ports.secret_box()
        keys = listed_keys(ports.settings().secret_key)
        ledger = ledger_at_head()
        count = ledger.rotate_secrets(box)
        tokens = ledger.rotate_refresh_tokens(box)
    console = out()
    console.print(
        f"re-encrypted the secrets of {count} connection(s) with the first key of LEDGERBRIDGE_SECRET_KEY"
    )
    console.print(f"re-encrypted {tokens} stored ERP refresh token(s) with it")
    if len(keys) < 2:
        console.print(
            "note: LEDGERBRIDGE_SECRET_KEY holds a single key, so nothing was rotated away from; to "
            'rotate, set it to "NEWKEY,OLDKEY" first (see `ledgerbridge secrets rotate --help`)'
        )
    else:
        console.print(
            f"now drop the {len(keys) - 1} old key(s): set LEDGERBRIDGE_SECRET_KEY to the first key alone "
            "everywhere and restart the processes"
        )
