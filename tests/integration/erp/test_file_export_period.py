# mypy: allow-untyped-defs, allow-incomplete-defs, allow-untyped-calls
"""The file target over a realistic period: the summary journal entries of a Zuora journal run
(Zuora sandbox over HTTP, three currencies, mapped with ``mapping.example.toml``), exported
concurrently by three writers and then exported again.

Done when: the period's files sum to the same debits and credits as its manifest (and as the
journals sent), and a re-run adds no line. The unit tests (``tests/unit/erp/test_file_export.py``)
prove the same on small hand-made entries; this is the whole period at once.
"""

from __future__ import annotations

import csv
import json
import random
import threading
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from shared.connections import ZuoraTarget
from shared.erp.base import Journal, Totals
from shared.erp.file_export import FileExportErp
from shared.mapping import journal_from_summary_entry, load_mapping
from shared.settings import DEFAULT_JOURNAL_TRANSACTION_TYPES
from shared.zuora import ZuoraClient

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[3]
PERIOD_NAME = "December 2024"  # the Zuora sandbox's transaction month


def zuora_journals(url: str, connection: str, redis) -> list[Journal]:
    """Run a journal run for the period and map every summary entry it produced."""
    target = ZuoraTarget(base_url=url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET)
    mapping = load_mapping(REPO / "mapping.example.toml")
    with ZuoraClient(target, connection=connection, redis=redis) as zuora:
        number = zuora.journal_runs.create(PERIOD_NAME, "2024-12-31", DEFAULT_JOURNAL_TRANSACTION_TYPES)
        deadline = time.monotonic() + 30
        while not zuora.journal_runs.get(number).completed:
            assert time.monotonic() < deadline, f"journal run {number} did not complete"
            time.sleep(0.1)
        entries = [e for page in zuora.journal_entries.list_by_run(number) for e in page.entries]
    return [journal_from_summary_entry(entry.raw, mapping) for entry in entries]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_period_files_sum_to_their_manifest_and_a_rerun_adds_no_line(
    zuora_sandbox, real_redis, connection_name, tmp_path
):
    journals = zuora_journals(zuora_sandbox(seed=1).url, connection_name, real_redis)
    periods = {j.period for j in journals}
    assert len(journals) > 20 and len({j.currency for j in journals}) == 3 and periods == {"2024-12"}
    export_dir = tmp_path / "gl-export"
    failures: list[BaseException] = []

    def writer(seed: int) -> None:
        order = list(journals)
        random.Random(seed).shuffle(order)
        try:
            erp = FileExportErp(export_dir)  # each writer its own adapter, as each worker process has
            for journal in order:
                erp.post_journal(journal)
        except BaseException as exc:  # collected and asserted on below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures and not any(t.is_alive() for t in threads)
    first = snapshot(export_dir)

    erp = FileExportErp(export_dir)
    refs = [erp.post_journal(journal) for journal in journals]  # the re-run
    rerun = snapshot(export_dir)

    folder = export_dir / "2024-12"
    manifest = json.loads((folder / "manifest.json").read_text())
    rows = read_csv(folder / "journal.csv")
    lines = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    debit = sum((Decimal(r["debit"]) for r in rows), Decimal(0))
    credit = sum((Decimal(r["credit"]) for r in rows), Decimal(0))
    sent_debit = sum((j.total_debit for j in journals), Decimal(0))
    sent_credit = sum((j.total_credit for j in journals), Decimal(0))
    expected_lines = sum(len(j.lines) for j in journals)
    stats = {"lines": expected_lines, "entries": len(journals), "debit": str(debit), "credit": str(credit)}

    assert manifest["files"] == {"journal.csv": stats, "journal.jsonl": stats}
    assert debit == credit == sent_debit == sent_credit
    assert lines == rows and len(rows) == expected_lines
    assert sorted({r["natural_key"] for r in rows}) == sorted(j.natural_key for j in journals)
    assert rerun == first  # the re-run added no line and rewrote nothing
    assert refs == [erp.find_document("journal", j.natural_key) for j in journals]
    by_account: dict[tuple[str, str], Totals] = defaultdict(Totals)
    for j in journals:
        for line in j.lines:
            by_account[(line.account, j.currency)] += Totals(line.debit, line.credit)
    assert erp.journal_totals(period="2024-12") == dict(by_account)
    assert erp.journal_totals(natural_keys=[j.natural_key for j in journals]) == dict(by_account)
