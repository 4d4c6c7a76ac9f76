"""Manual summary journal entries: ``POST /v1/journal-entries`` (zuora-api.md section 8.5).

An entry file is the request body as JSON (amounts are read as exact decimals, never floats)::

    {"accountingPeriodName": "December 2024", "journalEntryDate": "2024-12-31", "currency": "USD",
     "notes": "Accrual", "segments": [{"segmentName": "Region", "segmentValue": "US"}],
     "journalEntryItems": [
        {"accountingCodeName": "Accounts Receivable", "type": "Debit", "amount": 400.90},
        {"accountingCodeName": "Sales Revenue", "type": "Credit", "amount": 400.90}]}

:func:`check_entry` lists *every* problem at once: required fields, item fields, debits equal to
credits (Decimal, exact; also in the home currency when home-currency amounts are configured),
the currency and accounting codes in the mapping file, ``homeCurrencyAmount`` present on every
item exactly when the tenant converts to a home currency (and on none otherwise), and the
accounting period Open in Zuora. :func:`create_entry` creates a valid entry with an
Idempotency-Key derived from its content, so submitting the same file twice within Zuora's 24-hour
key retention returns the first entry's number instead of booking it again (section 3).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from shared import jsoncodec
from shared.jsoncodec import dumps
from shared.mapping import Mapping as GlMapping
from shared.zuora.client import ZuoraClient
from shared.zuora.records import to_decimal
from shared.zuora.transfers import TRANSFERRED_VALUES
from shared.zuora.wire import is_text

REQUIRED_FIELDS = ("accountingPeriodName", "journalEntryDate", "currency", "journalEntryItems")
KNOWN_FIELDS = frozenset(
    {*REQUIRED_FIELDS, "notes", "transferredToAccounting", "segments", "organizationLabel"}
)
ITEM_REQUIRED_FIELDS = ("accountingCodeName", "type", "amount")
KNOWN_ITEM_FIELDS = frozenset({*ITEM_REQUIRED_FIELDS, "accountingCodeType", "homeCurrencyAmount"})
MAX_NOTES = 2000
OPEN_ENDED_PERIOD = "Open-Ended"
# Zuora keeps at most 13 digits before the decimal point and 9 after ("Rounding and precision in
# Zuora"; docs/vendor-notes.md). Within them, Decimal's 28 digits add up any realistic number of
# items exactly, so a balance check can never be fooled by rounding.
MAX_INTEGER_DIGITS = 13
MAX_FRACTION_DIGITS = 9


class EntryFileError(ValueError):
    """The entry file cannot be read or is not a JSON object."""


class InvalidEntry(ValueError):
    """The entry has problems; ``problems`` lists all of them."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("the journal entry is not valid:\n  " + "\n  ".join(self.problems))


def read_entry_file(path: Path | str) -> dict[str, Any]:
    """The JSON object in ``path``, numbers with a fraction as :class:`Decimal`."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise EntryFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EntryFileError(f"{path}: cannot read it: {exc}") from None
    try:
        data = jsoncodec.loads(text)
    except ValueError as exc:
        # DecodeError names the line and column; a plain ValueError is an integer longer than
        # Python reads (4,300 digits).
        raise EntryFileError(f"{path}: not valid JSON: {exc}") from None
    except RecursionError:
        raise EntryFileError(f"{path}: not valid JSON: arrays or objects nested too deeply") from None
    if not isinstance(data, dict):
        raise EntryFileError(
            f"{path}: must hold one JSON object (the journal entry), not {type(data).__name__}"
        )
    return data


def idempotency_parts(entry: Mapping[str, Any]) -> tuple[str, str]:
    """The Idempotency-Key parts of an entry: its canonical JSON (sorted keys, exact amounts)
    hashed, so the same content always gets the same key and any change gets a new one."""
    digest = hashlib.sha256(dumps(dict(entry), sort_keys=True).encode()).hexdigest()
    return ("manual-journal-entry", digest)


def _amount(value: Any, where: str, problems: list[str]) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        problems.append(f"{where} must be a number, not {json.dumps(value)}")
        return None
    try:
        amount = to_decimal(value)
    except ValueError:
        problems.append(f"{where} must be a number, not {_shown(value)}")
        return None
    integer_digits, fraction_digits = _digits(amount)
    if integer_digits > MAX_INTEGER_DIGITS or fraction_digits > MAX_FRACTION_DIGITS:
        problems.append(
            f"{where} must have at most {MAX_INTEGER_DIGITS} digits before the decimal point and "
            f"{MAX_FRACTION_DIGITS} after (Zuora's precision), not {_shown(value)}"
        )
        return None
    if amount <= 0:
        problems.append(f"{where} must be positive, not {amount}")
        return None
    return amount


def _digits(amount: Decimal) -> tuple[int, int]:
    """The digits of a finite ``amount`` before and after the decimal point, trailing zeros of
    the fraction not counted (``1.50`` is 1 and 1, ``1E+3`` is 4 and 0); read from the digit
    tuple, since any arithmetic would round to the context first."""
    _, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite: to_decimal refuses NaN and infinities
    text = "".join(map(str, digits)).lstrip("0")
    if not text:
        return 0, 0
    if exponent < 0:
        zeros = min(len(text) - len(text.rstrip("0")), -exponent)
        text, exponent = text[: len(text) - zeros], exponent + zeros
    return max(len(text) + exponent, 0), max(-exponent, 0)


def _shown(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters so a 5,000-digit amount stays one line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unsendable(value: Any) -> Iterator[tuple[str, str]]:
    """``(field, why)`` for every field of ``value`` (keys included) that no request can carry: a
    string UTF-8 cannot encode (a lone surrogate, as a JSON ``\\ud800`` escape reads) or a
    number JSON cannot write (NaN, an infinity). Iterative: entries come from files."""
    stack: list[tuple[Any, str | None]] = [(value, None)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if not is_text(item):
                yield at or "", "holds a lone surrogate (a \\ud800-\\udfff escape), which is not text"
        elif (isinstance(item, Decimal) and not item.is_finite()) or (
            isinstance(item, float) and not math.isfinite(item)
        ):
            yield at or "", f"is {item}, which JSON cannot carry"
        elif isinstance(item, Mapping):
            for key, child in item.items():
                text = isinstance(key, str) and is_text(key)
                name = key if text and key.isprintable() and key.strip() == key != "" else repr(key)
                if not text:
                    yield f"{at}: the field name {name}" if at else f"the field name {name}", "is not text"
                stack.append((child, name if at is None else f"{at}.{name}"))
        elif isinstance(item, list):
            stack.extend((child, f"{at}[{i}]") for i, child in enumerate(item))


def _is_date(value: Any) -> bool:
    """``value`` is a ``YYYY-MM-DD`` date (``date.fromisoformat`` alone also takes ``20241231``,
    ``2024-W52-2`` and, through ``str``, the number 20241231)."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def validate_entry(
    entry: Mapping[str, Any], *, mapping: GlMapping | None, home_currency_amounts: bool
) -> list[str]:
    """Every problem of ``entry`` that can be seen without asking Zuora (empty: none)."""
    problems: list[str] = []
    for name in REQUIRED_FIELDS:
        if entry.get(name) in (None, "", []):
            problems.append(f"{name} is required")
    for where, why in sorted(_unsendable(entry)):
        problems.append(f"{where} {why}")
    for name in sorted(set(entry) - KNOWN_FIELDS):
        if not name.endswith("__c"):
            problems.append(f"unknown field {name!r} (custom fields end with __c)")
    entry_date = entry.get("journalEntryDate")
    if entry_date not in (None, "") and not _is_date(entry_date):
        problems.append(f"journalEntryDate must be a date YYYY-MM-DD, not {_shown(entry_date)}")
    period = entry.get("accountingPeriodName")
    if period not in (None, "") and not isinstance(period, str):
        problems.append("accountingPeriodName must be a string")
    currency = entry.get("currency")
    if currency not in (None, ""):
        if not isinstance(currency, str):
            problems.append("currency must be a string such as USD")
        elif mapping is not None and is_text(currency) and currency not in mapping.currencies:
            problems.append(f"currency {currency} is not in the mapping file's [currencies]")
    transferred = entry.get("transferredToAccounting")
    if transferred is not None and (
        not isinstance(transferred, str) or transferred not in TRANSFERRED_VALUES
    ):
        problems.append(f"transferredToAccounting must be one of {', '.join(sorted(TRANSFERRED_VALUES))}")
    notes = entry.get("notes")
    if notes is not None and (not isinstance(notes, str) or len(notes) > MAX_NOTES):
        problems.append(f"notes must be text of at most {MAX_NOTES} characters")
    segments = entry.get("segments")
    if segments is not None and (
        not isinstance(segments, list)
        or not all(isinstance(s, Mapping) and s.get("segmentName") for s in segments)
    ):
        problems.append("segments must be a list of {segmentName, segmentValue}")
    items = entry.get("journalEntryItems")
    if items not in (None, "", []) and not isinstance(items, list):
        problems.append("journalEntryItems must be a list")
        items = []
    totals = {"Debit": Decimal(0), "Credit": Decimal(0)}
    home_totals = {"Debit": Decimal(0), "Credit": Decimal(0)}
    for index, item in enumerate(items or []):
        where = f"journalEntryItems[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where} must be an object")
            continue
        for name in ITEM_REQUIRED_FIELDS:
            if item.get(name) in (None, ""):
                problems.append(f"{where}.{name} is required")
        for name in sorted(set(item) - KNOWN_ITEM_FIELDS):
            if not name.endswith("__c"):
                problems.append(f"{where}: unknown field {name!r}")
        code = item.get("accountingCodeName")
        if code not in (None, "") and not isinstance(code, str):
            problems.append(f"{where}.accountingCodeName must be a string, not {_shown(code)}")
        elif isinstance(code, str) and code and mapping is not None and code not in mapping.accounts:
            problems.append(
                f"{where}.accountingCodeName {code!r} is not in the mapping file's [accounts], so the close "
                "could not post it"
            )
        side = item.get("type")
        if side not in (None, "") and side not in ("Debit", "Credit"):
            problems.append(f"{where}.type must be Debit or Credit, not {_shown(side)}")
        amount = _amount(item.get("amount"), f"{where}.amount", problems)
        home_value = item.get("homeCurrencyAmount")
        home = None
        if home_currency_amounts:
            if home_value in (None, ""):
                problems.append(
                    f"{where}.homeCurrencyAmount is required: the tenant converts to a home currency"
                )
            else:
                home = _amount(home_value, f"{where}.homeCurrencyAmount", problems)
        elif home_value is not None:
            problems.append(
                f"{where}.homeCurrencyAmount must not be sent: no home-currency conversion is configured "
                "(pass --home-currency-amounts if the tenant has it)"
            )
        if side in ("Debit", "Credit") and amount is not None:  # not `in totals`: a list is unhashable
            totals[side] += amount
        if side in ("Debit", "Credit") and home is not None:
            home_totals[side] += home
    unit = currency if isinstance(currency, str) and is_text(currency) else ""
    if totals["Debit"] != totals["Credit"]:
        problems.append(
            f"debits {totals['Debit']} != credits {totals['Credit']} {unit}".rstrip()
            + f" (difference {totals['Debit'] - totals['Credit']}): a journal entry must balance"
        )
    if home_currency_amounts and home_totals["Debit"] != home_totals["Credit"]:
        problems.append(
            f"home-currency debits {home_totals['Debit']} != credits {home_totals['Credit']} "
            f"(difference {home_totals['Debit'] - home_totals['Credit']}): a journal entry must balance"
        )
    return problems


def period_problems(zuora: ZuoraClient, name: str) -> list[str]:
    """Why the period ``name`` cannot take a new journal entry (empty: it is Open)."""
    if name == OPEN_ENDED_PERIOD:
        return []  # Zuora's open-ended period is always open (section 8.5)
    period = zuora.periods.find_by_name(name)
    if period is None:
        return [f"there is no accounting period named {json.dumps(name)} in Zuora"]
    if period.status != "Open":
        return [
            f"accounting period {json.dumps(name)} is {period.status}: a journal entry needs an Open period"
        ]
    return []


def check_entry(
    zuora: ZuoraClient, entry: Mapping[str, Any], *, mapping: GlMapping | None, home_currency_amounts: bool
) -> list[str]:
    """Every problem of ``entry``, including whether its period is Open in Zuora."""
    problems = validate_entry(entry, mapping=mapping, home_currency_amounts=home_currency_amounts)
    period = entry.get("accountingPeriodName")
    if isinstance(period, str) and period and is_text(period):
        problems += period_problems(zuora, period)
    return problems


def create_entry(
    zuora: ZuoraClient, entry: Mapping[str, Any], *, mapping: GlMapping | None, home_currency_amounts: bool
) -> str:
    """Validate, then create the entry; returns its number (``JE-...``). Raises
    :class:`InvalidEntry` with every problem, or the Zuora client's typed errors."""
    problems = check_entry(zuora, entry, mapping=mapping, home_currency_amounts=home_currency_amounts)
    if problems:
        raise InvalidEntry(problems)
    return zuora.journal_entries.create(dict(entry), idempotency_key=idempotency_parts(entry))
