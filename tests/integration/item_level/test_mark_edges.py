"""Gap-proof high-water marks over loopback HTTP: the Zuora sandbox on a real port, real Redis, a
migrated SQLite ledger, the pull flow run in this process. One test per cursor edge case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sandbox.zuora import Sizes
from shared.item_level import audit_marks, pull_stream
from shared.item_level.context import Options
from shared.item_level.pull import updated_of
from shared.item_level.streams import INVOICES
from tests.integration.item_level.support import Zuora, flow_context, records_of

pytestmark = pytest.mark.redis

OVERLAP = timedelta(seconds=60)
TIES = Sizes(
    accounts=10,
    invoices=330,
    payments=0,
    refunds=0,
    credit_memos=0,
    debit_memos=0,
    tie_count=150,
    large_invoices=0,
)


@pytest.fixture
def setup(tmp_path, real_redis, connection_name, zuora_sandbox):
    server = zuora_sandbox(seed=11, sizes=TIES)
    zuora = Zuora(server.url)

    def make_ctx(**options):
        return flow_context(
            zuora_url=server.url,
            connection=connection_name,
            redis_client=real_redis,
            database_url=f"sqlite:///{tmp_path / 'ledger.db'}",
            tmp_path=tmp_path,
            options=Options(overlap=OVERLAP, **options),
        )

    return zuora, make_ctx


def _posted(zuora: Zuora) -> dict[str, dict]:
    return {r["Id"]: r for r in zuora.rows("invoices") if r["Status"] == "Posted"}


def _ledger_ids(ctx) -> set[str]:
    return records_of(ctx, "invoice")


def test_150_records_with_one_updated_date_across_pages_are_all_pulled(setup):
    zuora, make_ctx = setup
    ctx = make_ctx()
    posted = _posted(zuora)
    stamps = sorted(r["UpdatedDate"] for r in posted.values())
    tie = max(set(stamps), key=stamps.count)
    first_tied = stamps.index(tie)
    assert stamps.count(tie) >= 100
    boundaries = [n for n in range(99, len(stamps), 99) if first_tied < n < first_tied + stamps.count(tie)]
    assert boundaries  # a page ends inside the tie: the next page starts in the middle of it

    result = pull_stream(ctx, INVOICES)

    assert result.pages == -(-len(posted) // 99)
    assert _ledger_ids(ctx) == set(posted)
    # and a rerun (reading from mark - overlap) brings nothing new
    assert pull_stream(ctx, INVOICES).new == 0


def test_record_committed_late_inside_the_overlap_is_caught_by_the_next_pull(setup):
    zuora, make_ctx = setup
    ctx = make_ctx()
    pull_stream(ctx, INVOICES)
    mark = ctx.ledger.get_mark(ctx.connection, "invoices")
    account = zuora.rows("accounts")[0]["Id"]

    # Stamped inside the overlap but visible only after the run: a late commit.
    late = zuora.add("invoices", {"AccountId": account})
    zuora.update("invoices", late["Id"], {"UpdatedDate": (mark - OVERLAP / 2).isoformat()})
    # Stamped further back than the overlap: the pull cannot see it; the mark audit must.
    lost = zuora.add("invoices", {"AccountId": account})
    zuora.update("invoices", lost["Id"], {"UpdatedDate": (mark - 3 * OVERLAP).isoformat()})

    again = pull_stream(ctx, INVOICES)

    assert late["Id"] in _ledger_ids(ctx)
    assert again.new == 1
    assert lost["Id"] not in _ledger_ids(ctx)
    assert audit_marks(ctx, INVOICES, window=timedelta(hours=1)) == 1
    assert lost["Id"] in _ledger_ids(ctx)
    assert ctx.ledger.get_stream(ctx.connection, "invoices").missed_by_mark == 1


def test_record_updated_mid_run_is_caught_with_its_new_version(setup):
    zuora, make_ctx = setup
    ctx = make_ctx()
    posted = _posted(zuora)
    by_stamp = sorted(posted.values(), key=lambda r: (r["UpdatedDate"], r["Id"]))
    already_read, not_yet_read = by_stamp[0]["Id"], by_stamp[-1]["Id"]
    updated = {}

    def after_page(progress):
        if progress.pages == 1:
            # a record this run already read, and one it has not reached, change in Zuora now
            for row_id in (already_read, not_yet_read):
                updated[row_id] = zuora.update("invoices", row_id, {"Comments": "changed mid-run"})

    pull_stream(ctx, INVOICES, progress=after_page)

    assert _ledger_ids(ctx) == set(posted)
    for row_id, row in updated.items():
        record = ctx.ledger.get_record(ctx.connection, "invoice", row_id)
        assert record.payload["comments"] == "changed mid-run"
        assert record.zuora_updated == updated_of({"updatedDate": row["UpdatedDate"]})


def test_marks_survive_a_restart_and_the_next_run_resumes_from_them(setup, tmp_path, real_redis):
    zuora, make_ctx = setup
    ctx = make_ctx()
    posted = _posted(zuora)

    class Died(Exception):
        pass

    def die_after_two_pages(progress):
        if progress.pages == 2:
            raise Died

    with pytest.raises(Died):
        pull_stream(ctx, INVOICES, progress=die_after_two_pages)
    mark = ctx.ledger.get_mark(ctx.connection, "invoices")
    ctx.ledger.dispose()
    ctx.zuora.close()

    restarted = make_ctx()  # a new process: new engine, new clients, the same ledger file
    assert restarted.ledger.get_mark(restarted.connection, "invoices") == mark
    windows = []
    real_pages = restarted.zuora.objects.pages

    def spy(query, cursor=None):
        windows.append([f for f in query.filters if f.startswith("updateddate.GE:")])
        yield from real_pages(query, cursor=cursor)

    restarted.zuora.objects.pages = spy
    result = pull_stream(restarted, INVOICES)

    window = datetime.fromisoformat(windows[0][0].removeprefix("updateddate.GE:"))
    assert window == (mark - OVERLAP).replace(microsecond=0)
    assert result.rows < len(posted)  # it did not start over
    assert _ledger_ids(restarted) == set(posted)
    assert restarted.ledger.get_mark(restarted.connection, "invoices") > mark
    assert datetime.now(UTC) - restarted.ledger.get_mark(restarted.connection, "invoices") >= OVERLAP
