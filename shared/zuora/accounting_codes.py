"""Accounting codes (``GET /v1/accounting-codes``, zuora-sdk ``AccountingCodesApi.get_all_accounting_codes``).

Credit and debit memo items do not carry an accounting code's name as invoice items do
(``accountingCode``); they carry the *ids* of their codes (``recognizedRevenueAccountingCodeId``
and others, zuora-sdk ``ExpandedCreditMemoItem``/``ExpandedDebitMemoItem``). The mapping file maps
names, so :meth:`AccountingCodes.name_of` turns an id into its name from a per-connection cache,
read once and read again when an id it does not know appears (a code added in Zuora since), at
most once per ``refresh_interval`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from shared.zuora.paging import REFERENCE_LIMITS
from shared.zuora.transport import ZuoraTransport


@dataclass(frozen=True)
class AccountingCode:
    id: str
    name: str
    type: str | None
    category: str | None
    status: str | None
    gl_account_number: str | None
    gl_account_name: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccountingCode:
        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value in (None, "") else str(value)

        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            type=text("type"),
            category=text("category"),
            status=text("status"),
            gl_account_number=text("glAccountNumber"),
            gl_account_name=text("glAccountName"),
        )


class AccountingCodes:
    def __init__(
        self,
        transport: ZuoraTransport,
        *,
        refresh_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._t = transport
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._refresh = threading.Lock()
        self._names: dict[str, str] | None = None
        self._read_at: float | None = None
        self.reads = 0  # how many times the list was read (each read is one call per page)

    def list(self, *, page_size: int = REFERENCE_LIMITS["list"]) -> Iterator[AccountingCode]:
        """Every accounting code, following ``nextPage``; the page size is capped at what the tenant
        accepts (300 or 40, :class:`~shared.zuora.paging.PageLimits`)."""
        for _, _, body in self._t.numbered_pages(
            "/v1/accounting-codes",
            operation="accounting-codes.list",
            page_size=page_size,
            what="accounting codes",
        ):
            for item in body.get("accountingCodes") or []:
                if isinstance(item, Mapping) and item.get("id"):
                    yield AccountingCode.from_json(item)

    def name_of(self, code_id: str) -> str | None:
        """The name of the accounting code ``code_id``, or None when Zuora has no such code (after
        reading the list again, unless it was read within ``refresh_interval`` seconds)."""
        known, found = self._cached(code_id)
        if known:
            return found
        with self._refresh:  # one thread reads the list; the others wait for its answer
            known, found = self._cached(code_id)
            if known:
                return found
            names = {code.id: code.name for code in self.list()}
            with self._lock:
                self._names = names
                self._read_at = self._clock()
                self.reads += 1
            return names.get(code_id)

    def _cached(self, code_id: str) -> tuple[bool, str | None]:
        """(whether the cache answers for ``code_id``, the name it has)."""
        with self._lock:
            names = self._names
            fresh = self._read_at is not None and self._clock() - self._read_at < self._refresh_interval
        if names is not None and (code_id in names or fresh):
            return True, names.get(code_id)
        return False, None
