"""A local fake of Acumatica's contract-based REST API (acumatica-api.md), built like a moto service.

The same room names as ``sandbox.zuora`` (sandbox/README.md):

- ``app``: ``create_app``/``run`` and the middleware; ``routes``: the URL table;
- ``handlers``: parse the request, call the backend, render the answer;
- ``backend``: the state and one method per operation (422s, numbering, releases, sessions);
- ``errors``: the real failure bodies and statuses; ``control``: ``/_sandbox``;
- ``faults``: injected errors, latency and dropped connections; ``config``: the knobs.

Acumatica's own: ``entities`` (the contract: entities, fields, keys, labels), ``records`` (stored
rows, wrapped-value parsing (400s) and rendering), ``query`` (``$filter``/``$select``/``$expand``/
``$top``/``$skip``), ``licence`` (cores, queue, per-minute limit, request counters, 429s),
``contract`` and ``vendored`` (the endpoint definitions that judge the traffic).
"""

from sandbox.acumatica.app import create_app, run
from sandbox.acumatica.backend import AcumaticaBackend
from sandbox.acumatica.config import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_ENDPOINT,
    DEFAULT_PASSWORD,
    DEFAULT_TENANT,
    DEFAULT_USERNAME,
    SandboxConfig,
)
from sandbox.dropping import ConnectionDropped

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_ENDPOINT",
    "DEFAULT_PASSWORD",
    "DEFAULT_TENANT",
    "DEFAULT_USERNAME",
    "AcumaticaBackend",
    "ConnectionDropped",
    "SandboxConfig",
    "create_app",
    "run",
]
