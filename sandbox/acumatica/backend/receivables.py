"""Accounts receivable writers (section 6): customers, invoices (and debit and credit memos), and
payments (and prepayments and refunds), each with its defaults and checks.

A document starts On Hold when ``hold_on_entry`` (else Balanced); line amounts follow AR301000's
rules; applications of a payment, refund or credit memo are checked against open documents of
the same customer and applied when the document is released (``actions``).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sandbox.acumatica.entities import (
    CREATABLE_INVOICE_TYPES,
    CREATABLE_PAYMENT_TYPES,
    CUSTOMER_STATUSES,
    ENTITIES,
    INVOICE_TYPES,
    PAYMENT_TYPES,
)
from sandbox.acumatica.records import Parsed, Problems, Row

from .state import ZERO, Touched, Write, money
from .validation import Validation

INVOICE_SIDE = frozenset({"INV", "DRM", "FCH"})
PAYMENT_SIDE = frozenset({"PMT", "PPM", "CRM"})
RELEASED_STATUSES = frozenset({"Open", "Closed", "Posted", "Unposted", "Released", "Voided"})


class Receivables(Validation):
    """The writers of Customer, Invoice and Payment (``AcumaticaBackend._write``)."""

    def _write_customer(self, w: Write) -> None:
        spec, row, parsed, problems, created = w.spec, w.row, w.parsed, w.problems, w.created
        touched = Touched()
        self._apply(
            spec.obj,
            row,
            parsed,
            problems,
            touched,
            frozen=frozenset() if created else frozenset({"CustomerID"}),
        )
        values = row.values
        if not self._required(problems, ("CustomerID",), values.get("CustomerID"), "Customer ID"):
            return
        if created:
            klass = self.customer_classes.get(str(values.get("CustomerClass") or "DEFAULT"), {})
            values.setdefault("CustomerClass", "DEFAULT")
            if values.get("CustomerClass") is None:
                values["CustomerClass"] = "DEFAULT"
            for name, default in (
                ("Status", "A"),
                ("CurrencyID", klass.get("currency", "USD")),
                ("Terms", klass.get("terms", "30D")),
                ("CreditLimit", ZERO),
            ):
                if values.get(name) is None:
                    values[name] = default
            self.sequences["BAccountID"] += 1
            values["BAccountID"] = 5000 + self.sequences["BAccountID"]
        self._required(problems, ("CustomerName",), values.get("CustomerName"), "Customer Name")
        klass_id = values.get("CustomerClass")
        self._exists(
            problems, ("CustomerClass",), klass_id in self.customer_classes, "Customer Class", klass_id
        )
        currency = values.get("CurrencyID")
        if currency is not None:
            self._exists(problems, ("CurrencyID",), self._currency_ok(currency), "Currency", currency)
        terms = values.get("Terms")
        if terms is not None:
            self._exists(problems, ("Terms",), terms in self.terms, "Terms", terms)

    def _write_invoice(self, w: Write) -> None:
        spec, row, parsed, problems, ctx, created = w.spec, w.row, w.parsed, w.problems, w.ctx, w.created
        values = row.values
        if values.get("released"):
            # A released document's fields are disabled: a PUT changes nothing but note and
            # custom fields, and still answers 200 (section 4.1).
            self._apply(spec.obj, row, Parsed(note=parsed.note, custom=parsed.custom), problems, Touched())
            return
        touched = Touched()
        frozen = frozenset() if created else frozenset({"Type", "ReferenceNbr"})
        if created and values.get("doc_type") is None:
            values["doc_type"] = "INV"
        self._apply(spec.obj, row, parsed, problems, touched, frozen=frozen)
        sent = touched.sent(row.id)
        doc_type = values.get("doc_type")
        if created and ("Type",) not in problems.fields and doc_type not in CREATABLE_INVOICE_TYPES:
            problems.add(
                ("Type",),
                f"Documents of the {INVOICE_TYPES.get(str(doc_type), doc_type)} type cannot be created here.",
            )
        customer = self._customer(values.get("customer"), problems, ("Customer",), "Customer")
        klass = self.customer_classes.get(
            str(customer.values.get("CustomerClass")) if customer else "DEFAULT", {}
        )
        if values.get("doc_date") is None:
            values["doc_date"] = ctx.business_date
        self._post_period(row, problems, module="AR", sent=sent, period_field="PostPeriod", date_field="Date")
        if customer is not None:
            if values.get("terms") is None:
                values["terms"] = customer.values.get("Terms")
            values["currency"] = customer.values.get("CurrencyID")
        if values.get("terms") is not None:
            self._exists(problems, ("Terms",), values["terms"] in self.terms, "Terms", values["terms"])
        if values.get("due_date") is None and doc_type != "CRM":
            values["due_date"] = values["doc_date"] + timedelta(
                days=self.terms.get(str(values.get("terms")), 0)
            )
        if values.get("ar_account") is None:
            values["ar_account"] = klass.get("ar_account", "11000")
        self._exists(
            problems,
            ("LinkARAccount",),
            self._account_ok(values["ar_account"]),
            "AR Account",
            values["ar_account"],
        )
        if values.get("branch") is None:
            values["branch"] = ctx.branch or "HQ"
        self._exists(problems, ("LinkBranch",), self._branch_ok(values["branch"]), "Branch", values["branch"])
        if created and "Hold" not in sent:
            values["hold"] = self.config.hold_on_entry
        if values.get("hold") is None:
            values["hold"] = False
        places = self._precision(values.get("currency"))
        total = ZERO
        lines = row.lines("lines")
        for line in lines:
            line_sent = touched.sent(line.id)
            lv = line.values
            path = ("Details", line.id)
            if lv.get("LineNbr") is None:
                lv["LineNbr"] = self._next_line_nbr(lines)
            if lv.get("Branch") is None:
                lv["Branch"] = values["branch"]
            self._exists(problems, (*path, "Branch"), self._branch_ok(lv["Branch"]), "Branch", lv["Branch"])
            if lv.get("Account") is None:
                lv["Account"] = klass.get("sales_account", "40000")
            self._exists(
                problems, (*path, "Account"), self._account_ok(lv["Account"]), "Account", lv["Account"]
            )
            if lv.get("Subaccount") is None:
                lv["Subaccount"] = "000000"
            self._exists(
                problems,
                (*path, "Subaccount"),
                self._subaccount_ok(lv["Subaccount"]),
                "Subaccount",
                lv["Subaccount"],
            )
            total += self._line_amounts(lv, line_sent, places)
        values["amount"] = money(total, places)
        values["balance"] = values["amount"]
        values["tax_total"] = ZERO
        values["status"] = "On Hold" if values["hold"] else "Balanced"
        if doc_type == "CRM":
            # A credit memo's applications are checked like a payment's and applied on release.
            self._check_applications(row, problems, places, collection="ApplicationsCreditMemo")
        else:
            for line in row.lines("applications"):
                if not line.values.get("released"):
                    problems.add(
                        ("ApplicationsCreditMemo", line.id, "ReferenceNbr"),
                        "Only a credit memo can be applied to other documents on this form.",
                    )

    @staticmethod
    def _line_amounts(lv: dict[str, Any], sent: set[str], places: int) -> Decimal:
        """Qty * UnitPrice = ExtendedPrice; Amount = ExtendedPrice - DiscountAmount (AR301000 lines)."""
        discount = lv.get("DiscountAmount") or ZERO
        lv["DiscountAmount"] = money(discount, places)
        if lv.get("Qty") is None:
            lv["Qty"] = Decimal("1")
        qty: Decimal = lv["Qty"]
        if "ExtendedPrice" in sent and "UnitPrice" not in sent:
            extended = lv.get("ExtendedPrice") or ZERO
            lv["UnitPrice"] = (extended / qty) if qty else extended
        elif "Amount" in sent and not sent & {"UnitPrice", "ExtendedPrice"}:
            extended = (lv.get("Amount") or ZERO) + discount
            lv["UnitPrice"] = (extended / qty) if qty else extended
        elif sent & {"Qty", "UnitPrice", "DiscountAmount"} or lv.get("ExtendedPrice") is None:
            extended = qty * (lv.get("UnitPrice") or ZERO)
        else:
            extended = lv["ExtendedPrice"]
        if lv.get("UnitPrice") is None:
            lv["UnitPrice"] = ZERO
        lv["UnitPrice"] = money(lv["UnitPrice"], 6).normalize() if lv["UnitPrice"] else ZERO
        lv["ExtendedPrice"] = money(extended, places)
        lv["Amount"] = money(extended - discount, places)
        amount: Decimal = lv["Amount"]
        return amount

    def _customer(
        self, customer_id: Any, problems: Problems, path: tuple[str, ...], display: str
    ) -> Row | None:
        if not self._required(problems, path, customer_id, display):
            return None
        customer = self._lookup("Customer", str(customer_id))
        if customer is None:
            self._exists(problems, path, False, display, customer_id)
            return None
        if customer.values.get("Status") == "I":
            problems.add(path, f"The customer status is '{CUSTOMER_STATUSES['I']}'.")
        return customer

    def _write_payment(self, w: Write) -> None:
        spec, row, parsed, problems, ctx, created = w.spec, w.row, w.parsed, w.problems, w.ctx, w.created
        values = row.values
        touched = Touched()
        frozen = frozenset() if created else frozenset({"Type", "ReferenceNbr"})
        if created and values.get("doc_type") is None:
            values["doc_type"] = "PMT"
        released = bool(values.get("released"))
        if released:
            # Fields of a released payment are disabled; new applications can still be added.
            restricted = Parsed(note=parsed.note, custom=parsed.custom, collections=dict(parsed.collections))
            self._apply(spec.obj, row, restricted, problems, touched, frozen=frozen)
        else:
            self._apply(spec.obj, row, parsed, problems, touched, frozen=frozen)
        sent = touched.sent(row.id)
        doc_type = values.get("doc_type")
        if created and ("Type",) not in problems.fields and doc_type not in CREATABLE_PAYMENT_TYPES:
            problems.add(
                ("Type",),
                f"Documents of the {PAYMENT_TYPES.get(str(doc_type), doc_type)} type cannot be created here.",
            )
        customer = self._customer(values.get("customer"), problems, ("CustomerID",), "Customer")
        if not released:
            if values.get("payment_method") is None:
                values["payment_method"] = "CHECK"
            method = self.payment_methods.get(str(values["payment_method"]))
            if self._exists(
                problems,
                ("PaymentMethod",),
                method is not None and method["active"],
                "Payment Method",
                values["payment_method"],
            ):
                assert method is not None
                if values.get("cash_account") is None:
                    values["cash_account"] = method["cash_account"]
            if values.get("cash_account") is not None:
                self._exists(
                    problems,
                    ("CashAccount",),
                    self._account_ok(values["cash_account"], cash=True),
                    "Cash Account",
                    values["cash_account"],
                )
            else:
                self._required(problems, ("CashAccount",), None, "Cash Account")
            if values.get("currency") is None and customer is not None:
                values["currency"] = customer.values.get("CurrencyID")
            if values.get("currency") is not None:
                self._exists(
                    problems,
                    ("CurrencyID",),
                    self._currency_ok(values["currency"]),
                    "Currency",
                    values["currency"],
                )
            if values.get("doc_date") is None:
                values["doc_date"] = ctx.business_date
            self._post_period(
                row, problems, module="AR", sent=sent, period_field=None, date_field="ApplicationDate"
            )
            if values.get("branch") is None:
                values["branch"] = ctx.branch or "HQ"
            self._exists(problems, ("Branch",), self._branch_ok(values["branch"]), "Branch", values["branch"])
            if values.get("amount") is None:
                values["amount"] = ZERO
            if values["amount"] < 0:
                problems.add(("PaymentAmount",), "The value must be greater than or equal to 0.")
            if created and "Hold" not in sent:
                values["hold"] = self.config.hold_on_entry
            if values.get("hold") is None:
                values["hold"] = False
            values["status"] = "On Hold" if values["hold"] else "Balanced"
        places = self._precision(values.get("currency"))
        values["amount"] = money(values.get("amount") or ZERO, places)
        self._check_applications(row, problems, places)

    def _check_applications(
        self, row: Row, problems: Problems, places: int, *, collection: str = "DocumentsToApply"
    ) -> None:
        """Check the unreleased applications of a payment, refund or credit memo (stored under
        ``applications``, shown as ``collection``): open documents of the same customer, amounts
        within each document's balance and, together, within the applying document's amount."""
        values = row.values
        applications = row.lines("applications")
        released_total = sum(
            (line.values.get("AmountPaid") or ZERO for line in applications if line.values.get("released")),
            ZERO,
        )
        available = values["amount"] - released_total
        pending: dict[tuple[str, str], Decimal] = {}
        for line in applications:
            lv = line.values
            if lv.get("released"):
                continue
            path = (collection, line.id)
            if lv.get("DocType") is None:
                lv["DocType"] = "INV" if values.get("doc_type") != "REF" else "PMT"
            if not self._required(
                problems, (*path, "ReferenceNbr"), lv.get("ReferenceNbr"), "Reference Nbr."
            ):
                continue
            allowed = PAYMENT_SIDE if values.get("doc_type") == "REF" else INVOICE_SIDE
            target = self._by_key(
                ENTITIES["Invoice"] if lv["DocType"] in INVOICE_TYPES else ENTITIES["Payment"],
                (lv["DocType"], lv["ReferenceNbr"]),
            )
            # The selector lists only open documents of the same customer (AR302000).
            usable = (
                target is not None
                and lv["DocType"] in allowed
                and target.values.get("customer") == values.get("customer")
                and target.values.get("status") == "Open"
                and target.id != row.id
            )
            if not self._exists(
                problems, (*path, "ReferenceNbr"), usable, "Reference Nbr.", lv["ReferenceNbr"]
            ):
                continue
            assert target is not None
            key = (lv["DocType"], lv["ReferenceNbr"])
            balance = target.values.get("balance") or ZERO
            remaining_target = balance - pending.get(key, ZERO)
            if lv.get("AmountPaid") is None:
                lv["AmountPaid"] = max(ZERO, min(remaining_target, available - sum(pending.values(), ZERO)))
            lv["AmountPaid"] = money(lv["AmountPaid"], places)
            if lv["AmountPaid"] < 0:
                problems.add((*path, "AmountPaid"), "The value must be greater than or equal to 0.")
            elif lv["AmountPaid"] > remaining_target:
                problems.add(
                    (*path, "AmountPaid"), "The amount paid cannot exceed the balance of the document."
                )
            pending[key] = pending.get(key, ZERO) + lv["AmountPaid"]
            lv["CustomerOrder"] = target.values.get("invoice_nbr")
            lv["Description"] = target.values.get("description")
            lv["Customer"] = target.values.get("customer")
            lv["Balance"] = balance
            lv["PostPeriod"] = target.values.get("fin_period")
        if sum(pending.values(), ZERO) > available:
            problems.add(("PaymentAmount",), "The amount applied to documents exceeds the payment amount.")
        values["applied_total"] = released_total + sum(pending.values(), ZERO)
