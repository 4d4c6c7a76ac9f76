"""What the ledger knows about one record, close run or audit subject, with its timeline.

:func:`explain` answers ``ledgerbridge explain``: it reads the ledger and the audit trail and
returns values; printing them is the caller's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.ledger.errors import RecordNotFound

if TYPE_CHECKING:
    from shared.ledger.models import AuditEvent, CloseRun, SyncRecord
    from shared.ledger.repo import Ledger

# ``<kind>:<rest>``: close:<run id>, or an audit subject such as invoice:<zuora id>.
SUBJECT_RE = re.compile(r"^([a-z_]+):(.+)$")


@dataclass(frozen=True)
class RecordHistory:
    """A synced record and its timeline, oldest first; ``links`` names, in words, what it is
    applied to in the ERP and what is applied to it (a correction and what it corrects)."""

    record: SyncRecord
    timeline: list[AuditEvent]
    links: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CloseRunHistory:
    """A close run, its timeline (oldest first) and the journal-entry records it posted."""

    run: CloseRun
    timeline: list[AuditEvent]
    records: list[SyncRecord]


@dataclass(frozen=True)
class SubjectHistory:
    """The timeline of an audit subject no record stands for (``connection:<name>``, ...)."""

    subject: str
    timeline: list[AuditEvent]


@dataclass(frozen=True)
class Explanation:
    """The answer to one query; empty when the ledger knows nothing about it."""

    query: str
    connection: str
    records: list[RecordHistory] = field(default_factory=list)
    close_runs: list[CloseRunHistory] = field(default_factory=list)
    subjects: list[SubjectHistory] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.records or self.close_runs or self.subjects)


def explain(ledger: Ledger, connection: str, query: str) -> Explanation:
    """What the ledger knows about ``query`` on ``connection``.

    ``close:<id>`` names a close run (the connection does not matter: run ids are global).
    Anything else is looked up as a record's Zuora id, number or ERP reference; failing that, a
    query shaped ``<object type>:<zuora id>`` is a record's subject, and if no record has it, a raw
    audit subject (``connection:<name>``), reported only when it has audit events.
    """
    found = Explanation(query=query, connection=connection)
    match = SUBJECT_RE.match(query)
    if match and match.group(1) == "close":
        try:
            run = ledger.get_close_run(int(match.group(2)))
        except (ValueError, RecordNotFound):
            return found
        subject = f"close:{run.id}"
        found.close_runs.append(
            CloseRunHistory(run, ledger.timeline(subject), ledger.records_for_close_run(run.id or 0))
        )
        return found
    records = ledger.find_records(connection, query)
    if not records and match:
        record = ledger.get_record(connection, match.group(1), match.group(2))
        if record is not None:
            records = [record]
        elif events := ledger.timeline(query):
            found.subjects.append(SubjectHistory(query, events))
    found.records.extend(
        RecordHistory(record, ledger.timeline(record.subject), _links(ledger, record)) for record in records
    )
    return found


def _links(ledger: Ledger, record: SyncRecord) -> list[str]:
    from shared.ledger.links import links_of

    if record.id is None:
        return []
    with ledger.reading() as session:
        applies_to, applied_by = links_of(session, record.id)
        return [x.describe("applies to") for x in applies_to] + [x.describe("applied by") for x in applied_by]
