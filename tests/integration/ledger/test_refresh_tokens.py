"""The ERP's rotating refresh tokens in the ledger: one encrypted row per connection, on SQLite and
PostgreSQL."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from shared.connections import Connection, FileTarget, ZuoraTarget
from shared.ledger.errors import SecretKeyError
from shared.ledger.refresh_tokens import LedgerRefreshToken
from shared.ledger.repo import Ledger
from shared.ledger.secrets import SecretBox, generate_key


@pytest.fixture
def box() -> SecretBox:
    return SecretBox([generate_key()])


def stored_rows(ledger: Ledger) -> list[tuple[str, str, int]]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT connection, token, version FROM erp_refresh_token ORDER BY 1"))
        return [tuple(row) for row in rows]


def test_the_first_token_stored_is_version_1_and_each_rotation_replaces_it_and_counts(ledger, box):
    assert ledger.load_refresh_token("acme", box) is None

    versions = [ledger.save_refresh_token("acme", token, box) for token in ("rt1", "rt2", "rt3")]

    assert versions == [1, 2, 3]
    assert ledger.load_refresh_token("acme", box) == "rt3"
    assert ledger.refresh_token_versions() == {"acme": 3}


def test_each_connection_keeps_its_own_token(ledger, box):
    ledger.save_refresh_token("acme", "rt-acme", box)
    ledger.save_refresh_token("beta", "rt-beta", box)

    assert (ledger.load_refresh_token("acme", box), ledger.load_refresh_token("beta", box)) == (
        "rt-acme",
        "rt-beta",
    )


def test_a_stored_token_is_encrypted_and_opens_only_with_a_listed_key(ledger, box):
    ledger.save_refresh_token("acme", "rt-secret-value", box)

    [(_, token, _)] = stored_rows(ledger)
    assert "rt-secret-value" not in token
    with pytest.raises(SecretKeyError, match="wrong LEDGERBRIDGE_SECRET_KEY"):
        ledger.load_refresh_token("acme", SecretBox([generate_key()]))


def test_the_session_store_reads_an_unopenable_token_as_none_so_other_tokens_are_tried(ledger, box):
    ledger.save_refresh_token("acme", "rt1", box)

    assert LedgerRefreshToken(ledger, "acme", box).load() == "rt1"
    assert LedgerRefreshToken(ledger, "acme", SecretBox([generate_key()])).load() is None


def test_the_session_store_saves_the_newest_token_of_its_connection(ledger, box):
    store = LedgerRefreshToken(ledger, "acme", box)

    store.save("rt1")
    store.save("rt2")

    assert store.load() == "rt2"
    assert ledger.refresh_token_versions() == {"acme": 2}


def test_rotate_refresh_tokens_reencrypts_every_token_so_the_old_key_can_go(ledger):
    old, new = generate_key(), generate_key()
    ledger.save_refresh_token("acme", "rt-acme", SecretBox([old]))
    ledger.save_refresh_token("beta", "rt-beta", SecretBox([old]))

    count = ledger.rotate_refresh_tokens(SecretBox([new, old]))

    assert count == 2
    assert ledger.load_refresh_token("acme", SecretBox([new])) == "rt-acme"
    assert ledger.load_refresh_token("beta", SecretBox([new])) == "rt-beta"
    assert ledger.refresh_token_versions() == {"acme": 1, "beta": 1}
    with pytest.raises(SecretKeyError):
        ledger.load_refresh_token("acme", SecretBox([old]))


def test_rotate_refresh_tokens_with_a_key_that_opens_nothing_changes_nothing(ledger, box):
    ledger.save_refresh_token("acme", "rt1", box)
    before = stored_rows(ledger)

    with pytest.raises(SecretKeyError):
        ledger.rotate_refresh_tokens(SecretBox([generate_key()]))

    assert stored_rows(ledger) == before


def test_rotate_refresh_tokens_never_puts_back_a_token_replaced_meanwhile(ledger):
    # A worker stores the next token while the rotation runs: either it waits for the rotation's
    # write lock (PostgreSQL's FOR UPDATE, a SQLite transaction begun IMMEDIATE) and writes after
    # it, or it commits between the rotation's read and its write (SQLite transactions begun on
    # the first write), which the rotation must notice. Either way the newest token stays.
    old, new = generate_key(), generate_key()
    ledger.save_refresh_token("acme", "rt1", SecretBox([old]))
    worker = threading.Thread(target=ledger.save_refresh_token, args=("acme", "rt2", SecretBox([new, old])))

    class WorkerRotatesMeanwhile(SecretBox):
        def rotate(self, token: str) -> str:
            if not worker.is_alive() and worker.ident is None:
                worker.start()
                worker.join(timeout=1.0)  # done unless it waits for our lock
            return super().rotate(token)

    ledger.rotate_refresh_tokens(WorkerRotatesMeanwhile([new, old]))
    worker.join(timeout=60)

    assert ledger.load_refresh_token("acme", SecretBox([new])) == "rt2"
    assert ledger.refresh_token_versions() == {"acme": 2}


def test_removing_a_stored_connection_forgets_its_refresh_token(ledger, box, tmp_path):
    conn = Connection(
        name="acme",
        zuora=ZuoraTarget(base_url="https://rest.test.zuora.com", client_id="id", client_secret="s"),
        erp_kind="file",
        file=FileTarget(export_dir=tmp_path),
    )
    ledger.add_connection(conn, box)
    ledger.save_refresh_token("acme", "rt1", box)
    ledger.save_refresh_token("default", "rt-env", box)

    assert ledger.remove_connection("acme") is True

    assert ledger.refresh_token_versions() == {"default": 1}
    assert ledger.forget_refresh_token("default") is True
    assert ledger.forget_refresh_token("default") is False
