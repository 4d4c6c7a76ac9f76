"""A local fake of Acumatica's contract-based REST API (acumatica-api.md), built like a moto service.

- ``entities``: the contract (entities, fields, keys, labels);
- ``records``: stored rows, wrapped-value parsing (400s) and rendering;
- ``query``: ``$filter``/``$select``/``$expand``/``$top``/``$skip``;
- ``backend``: the state and one method per operation (422s, numbering, releases, sessions);
- ``licence``: cores, queue, per-minute limit, request counters (429s);
- ``faults``: injected errors, latency and dropped connections;
- ``responses``: request handlers; ``controlplane``: ``/_sandbox``; ``app``: ``create_app``/``run``.
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
from sandbox.acumatica.faults import ConnectionDropped

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
