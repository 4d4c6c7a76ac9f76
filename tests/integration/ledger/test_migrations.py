"""The alembic migrations: they build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from shared.ledger.db import make_engine
from shared.ledger.errors import SchemaOutOfDate
from shared.ledger.migrate import check_up_to_date, current_revision, head_revision, upgrade
from shared.ledger.models import LEDGER_TABLES, metadata

REPO_ROOT = Path(__file__).resolve().parents[3]
# The newest revision: a new migration moves it (and the test that its schema is the models').
HEAD = "0011"


def _diffs(database_url: str) -> list[Any]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_migration_schema_equals_model_metadata(database_url):
    upgrade(database_url)

    assert _diffs(database_url) == []


def test_schema_comparison_detects_a_missing_index(database_url):
    # Guards the test above: an empty diff must mean "equal", not "comparison saw nothing".
    upgrade(database_url)
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_sync_record_due"))
    engine.dispose()

    diffs = _diffs(database_url)

    assert [(d[0], d[1].name) for d in diffs] == [("add_index", "ix_sync_record_due")]


def test_upgrade_creates_every_ledger_table(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()

    assert tables == {*LEDGER_TABLES, "alembic_version"}


def test_upgrade_twice_is_a_no_op(database_url):
    upgrade(database_url)
    upgrade(database_url)

    assert current_revision(database_url) == head_revision() == HEAD
    assert _diffs(database_url) == []


def test_upgrade_finds_migrations_from_any_working_directory(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    upgrade(database_url)

    assert current_revision(database_url) == HEAD


def test_check_up_to_date_on_empty_database_says_run_db_upgrade(database_url):
    assert current_revision(database_url) is None
    with pytest.raises(SchemaOutOfDate, match=r"has no schema yet: run `ledgerbridge db upgrade`"):
        check_up_to_date(database_url)


def test_check_up_to_date_after_upgrade_passes(database_url):
    upgrade(database_url)

    check_up_to_date(database_url)


def test_check_up_to_date_on_unknown_revision_says_upgrade_ledgerbridge(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()

    with pytest.raises(SchemaOutOfDate, match="newer than this release of ledgerbridge knows"):
        check_up_to_date(database_url)


def test_check_up_to_date_hides_the_password(postgres_url):
    url = postgres_url.replace("postgres@", "postgres:hunter2@")
    with pytest.raises(SchemaOutOfDate) as caught:
        check_up_to_date(url)
    assert "hunter2" not in str(caught.value)


def test_concurrent_upgrades_in_threads_all_succeed(database_url):
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda _: upgrade(database_url), range(3)))

    assert current_revision(database_url) == HEAD


def test_concurrent_upgrades_in_processes_all_succeed_and_migrate_once(database_url):
    code = "import sys; from shared.ledger.migrate import upgrade; upgrade(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, database_url], cwd=REPO_ROOT, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]

    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert current_revision(database_url) == HEAD
    assert _diffs(database_url) == []


def test_0002_adds_the_callout_digest_to_a_ledger_at_0001_and_keeps_its_callouts(database_url):
    upgrade(database_url, "0001")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO callout_notification (connection, notification_id, event_code, received_at, state)"
                " VALUES ('acme', 'n-1', '1110', '2026-01-01 00:00:00', 'done')"
            )
        )
    upgrade(database_url)
    with engine.begin() as conn:
        rows = conn.execute(sa.text("SELECT notification_id, digest FROM callout_notification")).all()
    engine.dispose()

    assert current_revision(database_url) == HEAD
    assert [tuple(r) for r in rows] == [("n-1", None)]
    assert _diffs(database_url) == []


def test_0003_adds_the_refresh_token_table_to_a_ledger_at_0002_and_keeps_its_connections(database_url):
    upgrade(database_url, "0002")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO connection (name, zuora_base_url, zuora_client_id, erp_kind, config, secrets,"
                " created_at, updated_at) VALUES ('acme', 'https://z', 'id', 'acumatica', '{}', 'sealed',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
    upgrade(database_url)
    with engine.begin() as conn:
        names = conn.execute(sa.text("SELECT name FROM connection")).scalars().all()
        tokens = conn.execute(sa.text("SELECT count(*) FROM erp_refresh_token")).scalar_one()
    engine.dispose()

    assert current_revision(database_url) == HEAD
    assert (names, tokens) == (["acme"], 0)
    assert _diffs(database_url) == []


def test_0005_adds_the_notice_outbox_to_a_ledger_at_0004_and_keeps_its_close_runs(database_url):
    upgrade(database_url, "0004")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO close_run (connection, period_name, step, status, allow_closed, dry_run, details,"
                " created_at, updated_at) VALUES ('acme', 'December 2024', 'reconcile', 'done', false, false,"
                " '{}', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
    upgrade(database_url)
    with engine.begin() as conn:
        runs = conn.execute(sa.text("SELECT period_name, status FROM close_run")).all()
        notices = conn.execute(sa.text("SELECT count(*) FROM notice_outbox")).scalar_one()
    engine.dispose()

    assert current_revision(database_url) == HEAD
    assert ([tuple(r) for r in runs], notices) == ([("December 2024", "done")], 0)
    assert _diffs(database_url) == []


def test_0005_downgrades_to_0004_without_the_notice_outbox(database_url):
    from alembic import command

    from shared.ledger.db import BEGIN_OPTION, Begin
    from shared.ledger.migrate import alembic_config

    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.execution_options(**{BEGIN_OPTION: Begin.CALLER})  # as upgrade(): env.py begins it
            command.downgrade(alembic_config(connection=conn), "0004")
            conn.commit()
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()

    assert current_revision(database_url) == "0004"
    assert "notice_outbox" not in tables
