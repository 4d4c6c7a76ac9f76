"""The Zuora Billing client: :class:`ZuoraClient` and the errors it raises."""

from shared.errors import ApiError, AuthFailed, NotFound, RateLimited, Reason, Rejected, Transient
from shared.zuora.client import ZuoraClient
from shared.zuora.paging import PagingLoop
from shared.zuora.retry import RetryPolicy

__all__ = [
    "ApiError",
    "AuthFailed",
    "NotFound",
    "PagingLoop",
    "RateLimited",
    "Reason",
    "Rejected",
    "RetryPolicy",
    "Transient",
    "ZuoraClient",
]
