"""The mapping file, and pure functions from Zuora records to ERP documents.

The mapping file (``LEDGERBRIDGE_MAPPING_FILE``, TOML, reviewed by Finance) says where Zuora's
accounting codes, payment method types and currencies go in the ERP::

    [erp]
    branch = "HQ"
    ledger = "ACTUAL"
    customer_class = "DEFAULT"
    tax_accounting_code = "Sales Tax Payable"   # the code whose account takes invoice tax
    memo_item_account = "recognized_revenue"    # or "deferred_revenue": a memo item's line account
    [accounts]            # Zuora accounting code name -> ERP GL account
    "Sales Revenue" = { account = "40000", subaccount = "000000" }
    [payment_methods]     # Zuora payment method type -> ERP payment method and cash account
    CreditCard = { method = "CC", cash_account = "10200" }
    [currencies]          # Zuora currency -> ERP currency; anything absent is refused
    USD = "USD"
    [journal]
    transaction_types = ["Invoice Item", "Taxation Item"]   # optional

The package: :mod:`.file` (the file's models, :func:`load_mapping`, the errors),
:mod:`.records` (reading Zuora rows), :mod:`.documents` (customers, AR documents, payments),
:mod:`.journal` (summary journal entries). :func:`load_mapping` validates the file (at start-up and by ``ledgerbridge mapping check``) and names
the file, table and key of every problem. Nothing is guessed: a record whose account, payment
method or currency is not in the file raises :class:`Unmapped` naming the missing key, and the
flow parks it. Records are read with case-insensitive keys and exact decimals (Object Query
spells ``ERPAccountId__c`` as ``eRPAccountId__c`` and sends amounts as numbers or strings,
zuora-api.md sections 9.3 and 8.2).
"""

from shared.mapping.documents import (
    CodeNames,
    UnknownAccountingCode,
    customer_from_account,
    document_from_credit_memo,
    document_from_debit_memo,
    document_from_invoice,
    payment_from_payment,
    payment_from_refund,
)
from shared.mapping.file import (
    MEMO_ITEM_CODE_FIELDS,
    AccountMapping,
    ErpSection,
    InconsistentRecord,
    JournalSection,
    Mapping,
    MappingError,
    MappingFileError,
    MemoItemAccount,
    PaymentMethodMapping,
    Unmapped,
    check_mapping,
    load_mapping,
)
from shared.mapping.journal import journal_from_summary_entry
from shared.mapping.records import Row, customer_id_of

__all__ = [
    "MEMO_ITEM_CODE_FIELDS",
    "AccountMapping",
    "CodeNames",
    "ErpSection",
    "InconsistentRecord",
    "JournalSection",
    "Mapping",
    "MappingError",
    "MappingFileError",
    "MemoItemAccount",
    "PaymentMethodMapping",
    "Row",
    "UnknownAccountingCode",
    "Unmapped",
    "check_mapping",
    "customer_from_account",
    "customer_id_of",
    "document_from_credit_memo",
    "document_from_debit_memo",
    "document_from_invoice",
    "journal_from_summary_entry",
    "load_mapping",
    "payment_from_payment",
    "payment_from_refund",
]
