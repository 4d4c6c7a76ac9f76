"""The evidence pack of a period's close: one zip an auditor can keep.

:func:`build_evidence_pack` gathers, for every close run of one period on one connection:

- ``timeline.csv`` / ``timeline.json``: each run's audit trail (subject ``close:<id>``): notes and
  state changes with their text, API exchanges by method, URL and status only (never a body or a
  header);
- ``approvals.csv``: who started each run, and each approval or rejection with who, when and why;
- ``reconciliation.csv``: the reconcile step's table, Zuora = ledger = ERP per account and currency;
- ``exceptions.csv``: every stop of a run and every journal entry of the close that was parked or
  failed, with its reason, and who resolved it, when and how;
- ``mapping.<ext>``: the mapping file in force, byte for byte (its sha256 is in the README);
- ``configuration.json``: the connection and the settings that shape a close, without a secret;
- ``README.txt``: what each file is, the period, the connection, who generated the pack and when,
  the ledgerbridge version, and each file's sha256.

Nothing secret goes into the pack: ``configuration.json`` is built from allow-lists of fields
known to be harmless (never by removing the names of known secrets), URLs lose any user-info
and the values of credential-like query parameters, a webhook URL keeps only its scheme and host
(the path of a Slack webhook is its token), and exchanges keep no body or header.
"""

from shared.evidence.pack import NoCloseRun, build_evidence_pack, evidence_file_name
from shared.evidence.rows import difference

__all__ = ["NoCloseRun", "build_evidence_pack", "difference", "evidence_file_name"]
