"""The ERP port (:mod:`shared.erp.base`) and its adapters: Acumatica (:mod:`shared.erp.acumatica`)
and the CSV/JSON Lines file export (:mod:`shared.erp.file_export`)."""

from shared.erp.base import (
    AccountTotals,
    Application,
    AppliedRef,
    ArDocument,
    ArLine,
    Customer,
    Document,
    ErpRef,
    ErpTarget,
    Journal,
    JournalLine,
    Payment,
    RefKind,
    RenderedRequest,
    Totals,
    UnbalancedJournal,
)
from shared.erp.errors import DuplicateDocuments, EndpointNotFound, OutcomeUnknown

__all__ = [
    "AccountTotals",
    "Application",
    "AppliedRef",
    "ArDocument",
    "ArLine",
    "Customer",
    "Document",
    "DuplicateDocuments",
    "EndpointNotFound",
    "ErpRef",
    "ErpTarget",
    "Journal",
    "JournalLine",
    "OutcomeUnknown",
    "Payment",
    "RefKind",
    "RenderedRequest",
    "Totals",
    "UnbalancedJournal",
]
