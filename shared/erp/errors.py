"""ERP-specific refinements of the :mod:`shared.errors` types; flows still branch on type only.

* :class:`OutcomeUnknown` (a :class:`~shared.errors.Transient`): a create was sent and no answer
  came back (timeout, dropped connection, gateway error). The ERP may have committed it, so the
  flow must look the document up by natural key before creating it again (acumatica-api.md
  section 7: a timed-out PUT may still have been committed).
* :class:`DuplicateDocuments` (a :class:`~shared.errors.Rejected`): more than one ERP document
  carries one Zuora natural key. A person must decide which stays; nothing is retried.
* :class:`ClosedPeriod` (a :class:`~shared.errors.Rejected`): the document's financial period
  takes no postings in the ERP; see the connection's closed-period rule.
* :class:`EndpointNotFound` (an :class:`~shared.errors.AuthFailed`): the configured endpoint does
  not exist on the instance. Like bad credentials, only a configuration change fixes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.errors import AuthFailed, Reason, Rejected, Transient

if TYPE_CHECKING:
    from shared.erp.base import ErpRef


class OutcomeUnknown(Transient):
    """The request may or may not have taken effect; look it up before repeating it."""

    in_doubt = True

    @property
    def still_running(self) -> bool:
        """Whether the ERP may still be running the request: no answer came (a timeout, a dropped
        connection), a gateway answered for it (502/503/504), or it said it is still at work
        (202). An answer from the ERP itself (a 500) means it has finished with the request, so a
        lookup that does not find the document tells the whole truth."""
        return self.status is None or self.status in (202, 502, 503, 504)


class DuplicateDocuments(Rejected):
    """More than one ERP document carries ``natural_key``; ``refs`` lists them."""

    def __init__(self, message: str, *, natural_key: str, refs: Sequence[ErpRef], **kw: object) -> None:
        reasons = [Reason("duplicate", f"{natural_key} is carried by {r.key}", None) for r in refs]
        super().__init__(message, reasons=reasons, **kw)  # type: ignore[arg-type]
        self.natural_key = natural_key
        self.refs = tuple(refs)


class ClosedPeriod(Rejected):
    """The ERP refused a document because its financial period (``period``, ``YYYY-MM``) takes no
    postings (closed, locked, inactive, or closed in receivables). Trying again changes nothing
    until a person opens the period, or the connection posts into the next open one."""

    def __init__(self, message: str, *, period: str, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.period = period


class EndpointNotFound(AuthFailed):
    """The configured web-service endpoint (name/version) is not served by the instance."""


class NotSent(Transient):
    """A create was not sent: its posting's deadline (see :mod:`shared.erp.fence`) would have
    passed before the ERP could answer. Nothing was created; the flow may try again later."""
