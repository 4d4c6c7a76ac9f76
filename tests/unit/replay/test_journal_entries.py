"""``replay`` of summary journal entries: previewed like any record; a parked entry goes back to
pending for its close; ``--force`` asks the ERP and posts only a missing entry."""

from __future__ import annotations

import pytest

from shared import replay
from shared.close.results import FINISHED
from shared.erp.acumatica_entities import journal_record
from shared.erp.acumatica_wire import wrap
from shared.erp.base import Journal
from shared.item_level.context import ItemContext
from shared.ledger.models import SyncRecord
from shared.mapping import load_mapping
from tests.support.dispatch import RecordingDispatcher
from tests.unit.close.support import Harness, write_mapping


@pytest.fixture
def make_harness(tmp_path, fake_redis):
    made: list[Harness] = []

    def build(**options) -> Harness:
        harness = Harness(tmp_path, fake_redis, **options)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.close_all()


def _context(h: Harness) -> ItemContext:
    return ItemContext(
        connection=h.connection,
        zuora=h.zuora,
        erp=h.erp,
        ledger=h.ledger,
        mapping=load_mapping(h.mapping_path),
        dispatch=RecordingDispatcher(),
    )


def _entries(h: Harness, run) -> list[SyncRecord]:
    return [r for r in h.ledger.records_for_close_run(run.id) if r.object_type == "journal_entry"]


@pytest.mark.parametrize("erp", ["file", "acumatica"])
def test_preview_of_a_marked_entry_shows_the_journal_as_sent_and_no_difference(make_harness, erp):
    h = make_harness(erp=erp)
    run = h.close()
    entry = _entries(h, run)[0]

    result = replay.preview(_context(h), entry)

    assert entry.state == "marked"
    assert result.fetched is True
    assert result.request is not None
    assert result.diff == ""
    assert result.would.startswith(f"nothing: already posted as {entry.erp_ref}")
    if erp == "acumatica":
        assert result.request.operation == "PUT JournalTransaction"
        journal = replay.document_from_payload(entry.posted_payload or {})
        assert isinstance(journal, Journal)
        assert result.request.body == wrap(journal_record(journal))
        (batch,) = h.batches_for(entry.zuora_number)
        accounts = [d["Account"]["value"] for d in result.request.body["Details"]]
        assert sorted(accounts) == sorted(d["Account"] for d in batch["Details"])
    else:
        assert result.request.operation == "export 2024-12/journal.csv and journal.jsonl rows"
        assert [row["natural_key"] for row in result.request.body] == [entry.zuora_number] * len(
            result.request.body
        )


def test_replay_of_a_marked_entry_does_nothing_and_force_finds_it(make_harness):
    h = make_harness(erp="file")
    run = h.close()
    entry = _entries(h, run)[0]
    batches = len(h.erp_batches())

    (plain,) = replay.replay_records(_context(h), [entry])
    (forced,) = replay.replay_records(_context(h), [entry], force=True)

    assert (plain.action, forced.action) == ("nothing", "found")
    assert forced.erp_ref == entry.erp_ref
    assert len(h.erp_batches()) == batches
    assert h.ledger.get_record_by_id(entry.id).state == "marked"


def test_replay_force_of_an_entry_the_erp_lost_posts_it_once_and_keeps_it_marked(make_harness):
    h = make_harness(erp="file")
    run = h.close()
    entry = _entries(h, run)[0]
    index = next((h.export_dir / ".index" / "journal").glob(f"{entry.zuora_number}.json"))
    index.unlink()  # the ERP no longer knows the entry

    (result,) = replay.replay_records(_context(h), [entry], force=True, reason="restored ERP")

    after = h.ledger.get_record_by_id(entry.id)
    assert (result.action, result.after) == ("posted", "marked")
    assert after.erp_ref == entry.erp_ref  # the export's reference is its natural key's path
    assert len(h.batches_for(entry.zuora_number)) == 1
    transitions = [e.message for e in h.ledger.timeline(entry.subject) if e.kind == "transition"]
    assert transitions[-3:] == [
        f"marked -> posting: forced re-post; previous erp_ref {entry.erp_ref}",
        f"posting -> posted: erp_ref {entry.erp_ref}",
        "posted -> marked",
    ]


def test_parked_entry_goes_back_to_pending_and_its_close_posts_it(make_harness, tmp_path):
    mapping = write_mapping(tmp_path / "partial.toml", drop_accounts=["Customer Cash on Account"])
    h = make_harness(mapping=mapping)
    run = h.close()
    parked = [r for r in _entries(h, run) if r.state == "parked"]
    assert run.status == "needs_attention" and parked
    write_mapping(mapping)  # Finance adds the code
    ctx = _context(h)

    preview = replay.preview(ctx, parked[0])
    results = replay.replay_records(ctx, parked, reason="code added")

    assert preview.problem is None
    assert preview.would == (
        'return it to pending; re-running its close (`ledgerbridge close "December 2024"`) checks and posts it'
    )
    assert {(r.before, r.after, r.action) for r in results} == {("parked", "pending", "to_close")}
    assert h.erp_batches() == []  # nothing posted outside the close
    run = h.drive(run.id)
    assert run.status == "done"
    assert {h.ledger.get_record_by_id(r.id).state for r in parked} == {"marked"}
    assert all(len(h.batches_for(r.zuora_number)) == 1 for r in parked)


def test_failed_journal_entries_are_listed_for_their_close(make_harness, tmp_path):
    mapping = write_mapping(tmp_path / "partial.toml", drop_accounts=["Customer Cash on Account"])
    h = make_harness(mapping=mapping)
    run = h.close()

    listed = replay.failed_journal_entries(h.ledger, h.connection)

    assert {r.id for r in listed} == {r.id for r in _entries(h, run) if r.state == "parked"}
    assert replay.failed_records(h.ledger, h.connection) == []  # --failed re-drives item-level only
    assert FINISHED not in {run.step}
