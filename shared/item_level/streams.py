"""The item-level streams, declared as data: one :class:`Stream` per Zuora object the sync moves.

Each stream says where its records come from (Object Query path, filters, expansions), how
they are keyed (Zuora id, number), which ERP call they feed, which records they depend on
(the account's customer; the documents a payment, refund or credit memo applies to) and how
they are marked ``TransferredToAccounting=Yes`` afterwards (zuora-api.md section 10.2:
``action/update`` for invoices, payments and refunds; the REST PUTs for credit and debit memos,
which Actions do not support). One loop (:mod:`.pull`) runs them all.

Every base field is fetched (no ``fields[]`` on the base object): the mapping reads fields that
vary by tenant (custom fields such as ``ERPAccountId__c``, memo item accounting codes) and naming
a field a tenant lacks is a 400 (section 9.2). That costs payload, not calls.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shared.erp.base import RefKind
from shared.ledger.models import ObjectType
from shared.zuora.object_query import MAX_PAGE_SIZE, ObjectQuery, condition
from shared.zuora.records import get_field

ErpMethod = Literal["upsert_customer", "create_document", "create_payment"]
MemoPut = Literal["credit_memo", "debit_memo"]

# Object Query sorts on one field only (section 9.2); updatedDate ascending is what makes a
# high-water mark possible (section 9.5). Ties are broken by the cursor itself (keyset on id).
SORT = "updateddate.ASC"


@dataclass(frozen=True)
class Children:
    """Item lines expanded under the parent (``key``) and, when the expansion may be cut at the
    page size (section 9.3), fetched from their own object by ``<parent_filter>.EQ:<id>``."""

    key: str
    expand: str
    path: str
    parent_filter: str


@dataclass(frozen=True)
class ApplicationTarget:
    """A field of an application naming a document this record applies to."""

    field: str
    object_type: str
    kind: RefKind


@dataclass(frozen=True)
class Applications:
    """The expanded applications of a payment, refund or credit memo."""

    key: str
    expand: str
    amount_field: str
    targets: tuple[ApplicationTarget, ...]


@dataclass(frozen=True)
class Stream:
    """One transaction type of the item-level sync."""

    name: str
    object_type: str
    path: str
    number_field: str
    erp_method: ErpMethod
    erp_kind: RefKind
    level: int  # posting order within a batch: dependencies (lower levels) first
    filters: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    expand: tuple[str, ...] = ()
    items: Children | None = None
    applications: Applications | None = None
    # How the record is marked transferred: an Actions type, a memo PUT, or not at all (accounts).
    mark_action_type: str | None = None
    mark_put: MemoPut | None = None
    # The status a pushed record must have on re-fetch to be posted ("Posted", "Processed").
    posted_status: str | None = None
    # Callout event codes (section 12.4) whose objectId is a record of this stream.
    events: tuple[str, ...] = ()
    # Electronic-only events: external payments and refunds fire no callout (section 12.5).
    callouts_electronic_only: bool = False

    @property
    def marks(self) -> bool:
        return self.mark_action_type is not None or self.mark_put is not None

    @property
    def depends_on_account(self) -> bool:
        return self.object_type != ObjectType.ACCOUNT.value

    def query(
        self, since: datetime | None = None, *, before: datetime | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> ObjectQuery:
        """The pull query: the stream's filters, ``updateddate.GE:<since>`` and
        ``updateddate.LE:<before>``, ascending by updatedDate."""
        filters = self.filters
        if before is not None:
            filters = (condition("updateddate", "LE", before), *filters)
        if since is not None:
            filters = (condition("updateddate", "GE", since), *filters)
        return self._query(filters, page_size=page_size)

    def query_ids(self, ids: Sequence[str], *, with_filters: bool = True) -> ObjectQuery:
        """These records (at most a page of ids) with the stream's expansions: dependencies
        fetched with a page, a pushed record re-fetched (``with_filters=False`` to see its status)."""
        if not 1 <= len(ids) <= MAX_PAGE_SIZE:
            raise ValueError(f"query 1..{MAX_PAGE_SIZE} ids at a time, not {len(ids)}")
        by_id = condition("id", "EQ", ids[0]) if len(ids) == 1 else condition("id", "IN", list(ids))
        return self._query((by_id, *(self.filters if with_filters else ())))

    def query_id_list(self, start: datetime, end: datetime) -> ObjectQuery:
        """Ids and updated dates only, ``start <= updatedDate < end``: the mark audit's id list."""
        filters = (condition("updateddate", "GE", start), condition("updateddate", "LT", end), *self.filters)
        return ObjectQuery(self.path, filters=filters, sort=SORT, fields=("id", "updateddate"))

    def items_query(self, parent_id: str) -> ObjectQuery:
        assert self.items is not None
        return ObjectQuery(self.items.path, filters=(condition(self.items.parent_filter, "EQ", parent_id),))

    def _query(self, filters: tuple[str, ...], *, page_size: int = MAX_PAGE_SIZE) -> ObjectQuery:
        return ObjectQuery(
            self.path,
            filters=filters,
            sort=SORT,
            fields=self.fields,
            expand=self.expand,
            page_size=page_size,
        )

    # -- reading a fetched row -------------------------------------------------------------------

    def number_of(self, row: Mapping[str, Any]) -> str | None:
        value = get_field(row, self.number_field)
        return None if value in (None, "") else str(value)

    def account_of(self, row: Mapping[str, Any]) -> str | None:
        value = get_field(row, "id" if not self.depends_on_account else "accountId")
        return None if value in (None, "") else str(value)

    def is_posted(self, row: Mapping[str, Any]) -> bool:
        """Whether a re-fetched row is in the state this stream syncs."""
        return self.posted_status is None or get_field(row, "status") == self.posted_status

    def fires_callout(self, row: Mapping[str, Any]) -> bool:
        """Whether Zuora sends a callout for this record (so a pull finding it new means the push
        missed it)."""
        if not self.events:
            return False
        return not (self.callouts_electronic_only and get_field(row, "type") == "External")

    def truncated(self, row: Mapping[str, Any], page_size: int) -> bool:
        """Whether the expanded items may have been cut at ``page_size``, the page size of the query
        that fetched ``row`` (section 9.3)."""
        if self.items is None:
            return False
        expanded = get_field(row, self.items.key)
        return isinstance(expanded, list) and len(expanded) >= page_size

    def application_targets(self, row: Mapping[str, Any]) -> list[tuple[ApplicationTarget, str, Any]]:
        """``(target, zuora id, amount)`` of each expanded application."""
        if self.applications is None:
            return []
        found = get_field(row, self.applications.key)
        result: list[tuple[ApplicationTarget, str, Any]] = []
        for app in found if isinstance(found, list) else []:
            if not isinstance(app, Mapping):
                continue
            for target in self.applications.targets:
                target_id = get_field(app, target.field)
                if target_id:
                    result.append((target, str(target_id), get_field(app, self.applications.amount_field)))
                    break
        return result


# Fields that change while the record stays the same for the ERP: audit stamps, the transfer flag
# (marking sets it), running totals Zuora keeps as other documents apply to or settle this one
# (balances, applied, unapplied and refunded amounts, an account's invoice totals and MRR), and a
# refund's progress at its gateway. Everything else a record carries counts as its content.
VOLATILE_FIELDS: frozenset[str] = frozenset(
    {
        "updatedDate", "updatedById", "createdDate", "createdById", "transferredToAccounting",
        "balance", "creditBalance", "lastInvoiceDate", "mrr", "totalDebitMemoBalance",
        "totalInvoiceBalance", "unappliedBalance", "unappliedCreditMemoAmount",
        "paymentAmount", "refundAmount", "creditMemoAmount", "adjustmentAmount",
        "creditBalanceAdjustmentAmount", "appliedAmount", "unappliedAmount",
        "gatewayState", "settledOn", "submittedOn", "refundTransactionTime",
    }
)  # fmt: skip


def _content(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _content(v) for k, v in value.items() if str(k) not in VOLATILE_FIELDS}
    if isinstance(value, list):
        items = [_content(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, default=str))
    return value


def content_digest(row: Mapping[str, Any]) -> str:
    """A digest of what a fetched record says for accounting: the record without
    :data:`VOLATILE_FIELDS` (at any depth), expanded children in a stable order. Two fetches with
    the same digest carry the same content; marking a record transferred does not change it."""
    canonical = json.dumps(_content(row), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


ACCOUNTS = Stream(
    name="accounts",
    object_type=ObjectType.ACCOUNT.value,
    path="accounts",
    number_field="accountNumber",
    erp_method="upsert_customer",
    erp_kind="customer",
    level=0,
    expand=("billto",),
)

INVOICES = Stream(
    name="invoices",
    object_type=ObjectType.INVOICE.value,
    path="invoices",
    number_field="invoiceNumber",
    erp_method="create_document",
    erp_kind="invoice",
    level=1,
    filters=("status.EQ:Posted",),
    expand=("invoiceitems",),
    items=Children(
        key="invoiceItems", expand="invoiceitems", path="invoice-items", parent_filter="invoiceid"
    ),
    mark_action_type="Invoice",
    posted_status="Posted",
    events=("1110",),
)

DEBIT_MEMOS = Stream(
    name="debit_memos",
    object_type=ObjectType.DEBIT_MEMO.value,
    path="debit-memos",
    number_field="memoNumber",
    erp_method="create_document",
    erp_kind="debit_memo",
    level=1,
    filters=("status.EQ:Posted",),
    expand=("debitmemoitems",),
    items=Children(
        key="debitMemoItems", expand="debitmemoitems", path="debit-memo-items", parent_filter="debitmemoid"
    ),
    mark_put="debit_memo",
    posted_status="Posted",
    events=("2820",),
)

CREDIT_MEMOS = Stream(
    name="credit_memos",
    object_type=ObjectType.CREDIT_MEMO.value,
    path="credit-memos",
    number_field="memoNumber",
    erp_method="create_document",
    erp_kind="credit_memo",
    level=2,
    filters=("status.EQ:Posted",),
    expand=("creditmemoitems", "creditmemoapplications"),
    items=Children(
        key="creditMemoItems",
        expand="creditmemoitems",
        path="credit-memo-items",
        parent_filter="creditmemoid",
    ),
    applications=Applications(
        key="creditMemoApplications",
        expand="creditmemoapplications",
        amount_field="amount",
        targets=(
            ApplicationTarget("invoiceId", ObjectType.INVOICE.value, "invoice"),
            ApplicationTarget("debitMemoId", ObjectType.DEBIT_MEMO.value, "debit_memo"),
        ),
    ),
    mark_put="credit_memo",
    posted_status="Posted",
    # 2710 is "Credit Memo Created" (section 12.4): accepted, and the re-fetch checks the status.
    events=("2720", "2710"),
)

PAYMENTS = Stream(
    name="payments",
    object_type=ObjectType.PAYMENT.value,
    path="payments",
    number_field="paymentNumber",
    erp_method="create_payment",
    erp_kind="payment",
    level=2,
    filters=("status.EQ:Processed",),
    expand=("paymentmethod", "paymentapplications"),
    applications=Applications(
        key="paymentApplications",
        expand="paymentapplications",
        amount_field="applyAmount",  # zuora-sdk ExpandedPaymentApplication / ExpandedRefundApplication
        targets=(
            ApplicationTarget("invoiceId", ObjectType.INVOICE.value, "invoice"),
            ApplicationTarget("debitMemoId", ObjectType.DEBIT_MEMO.value, "debit_memo"),
        ),
    ),
    mark_action_type="Payment",
    posted_status="Processed",
    events=("2120",),
    callouts_electronic_only=True,
)

REFUNDS = Stream(
    name="refunds",
    object_type=ObjectType.REFUND.value,
    path="refunds",
    number_field="refundNumber",
    erp_method="create_payment",
    erp_kind="refund",
    level=3,
    filters=("status.EQ:Processed",),
    expand=("refundapplications",),
    applications=Applications(
        key="refundApplications",
        expand="refundapplications",
        amount_field="applyAmount",  # zuora-sdk ExpandedPaymentApplication / ExpandedRefundApplication
        targets=(
            ApplicationTarget("paymentId", ObjectType.PAYMENT.value, "payment"),
            ApplicationTarget("creditMemoId", ObjectType.CREDIT_MEMO.value, "credit_memo"),
        ),
    ),
    mark_action_type="Refund",
    posted_status="Processed",
    events=("2410", "2430"),
    callouts_electronic_only=True,
)

STREAMS: dict[str, Stream] = {
    s.name: s for s in (ACCOUNTS, INVOICES, DEBIT_MEMOS, CREDIT_MEMOS, PAYMENTS, REFUNDS)
}
STREAM_NAMES: tuple[str, ...] = tuple(STREAMS)
BY_OBJECT_TYPE: dict[str, Stream] = {s.object_type: s for s in STREAMS.values()}
BY_EVENT: dict[str, Stream] = {code: s for s in STREAMS.values() for code in s.events}


class UnknownStream(ValueError):
    """A stream name that is not one of :data:`STREAM_NAMES`."""


def get_stream(name: str) -> Stream:
    """The stream called ``name`` (``credit-memos`` and ``credit_memos`` both work)."""
    found = STREAMS.get(name.strip().lower().replace("-", "_"))
    if found is None:
        raise UnknownStream(f"unknown stream {name!r}; one of: {', '.join(STREAM_NAMES)}")
    return found


def select_streams(names: Iterable[str] | None = None) -> list[Stream]:
    """The named streams (all of them for None or an empty list), in dependency order."""
    chosen = [get_stream(n) for n in names] if names else list(STREAMS.values())
    unique = {s.name: s for s in chosen}
    return sorted(unique.values(), key=lambda s: (s.level, STREAM_NAMES.index(s.name)))


def for_object_type(object_type: str) -> Stream | None:
    return BY_OBJECT_TYPE.get(object_type)
