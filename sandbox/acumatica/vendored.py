"""Acumatica's published endpoint definitions, as vendored under ``definitions/``.

The files are trimmed copies of ``EndpointDefinitions/Default_<version>`` from Acumatica's
AcumaticaRESTAPIClientForCSharp repository (``definitions/SOURCE.md`` says which commit and how
they were trimmed; ``scripts/vendor-acumatica-definitions`` rebuilds them). 22.200.001 and
23.200.001 are Swagger 2.0 documents, 24.200.001 is OpenAPI 3.0.1, exactly as the vendor
publishes them. The sandbox serves them as ``swagger.json`` and the contract checker
(:mod:`sandbox.acumatica.contract`) judges traffic by them.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFINITIONS_DIR = Path(__file__).resolve().parent / "definitions"


def definition_path(endpoint: str) -> Path:
    """The vendored file of ``endpoint`` (``Default/24.200.001``), whether or not it exists."""
    name, _, version = endpoint.strip("/").partition("/")
    return DEFINITIONS_DIR / f"{name}_{version}.json"


def vendored_endpoints() -> tuple[str, ...]:
    """Every endpoint (``Name/Version``) with a vendored definition, oldest first."""
    found = []
    for path in sorted(DEFINITIONS_DIR.glob("*_*.json")):
        name, _, version = path.stem.partition("_")
        found.append(f"{name}/{version}")
    return tuple(found)


@lru_cache(maxsize=8)
def _load(endpoint: str) -> dict[str, Any] | None:
    path = definition_path(endpoint)
    if not path.is_file():
        return None
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def load_definition(endpoint: str) -> dict[str, Any] | None:
    """A private copy of ``endpoint``'s vendored definition, or None when none is vendored."""
    document = _load(endpoint)
    return None if document is None else copy.deepcopy(document)


def swagger_document(endpoint: str, base_url: str) -> dict[str, Any] | None:
    """The definition as an instance serves it at ``{base_url}/swagger.json``: the vendor's
    document with its server pointing at ``base_url`` (``http://host[/site]/entity/Name/Version``)."""
    document = load_definition(endpoint)
    if document is None:
        return None
    if "openapi" in document:
        document["servers"] = [{"url": base_url}]
    else:
        # Swagger 2.0 names its server by scheme, host and base path.
        scheme, _, rest = base_url.partition("://")
        host, _, path = rest.partition("/")
        document["schemes"] = [scheme]
        document["host"] = host
        document["basePath"] = "/" + path
    return document
