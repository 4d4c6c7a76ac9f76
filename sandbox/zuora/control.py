"""The control plane ``/_sandbox/...`` (moto's ``moto_api``): no auth, not counted, plain JSON.

Errors are ``{"error": "..."}`` with 400 (bad input) or 404 (unknown record or type).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, fields
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .backend import ZuoraBackend
from .errors import ZuoraError
from .faults import FaultRule
from .seed import Sizes

Endpoint = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _guard(handler: Callable[[Request], Awaitable[Any]]) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            result = await handler(request)
        except KeyError as exc:
            return _error(404, str(exc.args[0]) if exc.args else "not found")
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        except ZuoraError as exc:  # the backend's own rule errors (unknown period, bad state)
            return _error(404 if exc.category == 40 else 400, exc.message)
        return result if isinstance(result, Response) else JSONResponse(result)

    endpoint.__name__ = handler.__name__
    return endpoint


def sizes_from(body: Mapping[str, Any]) -> Sizes:
    """Sizes from ``{"sizes": {...}}`` and/or top-level size keys (``{"seed": 7, "invoices": 1000}``)."""
    names = {f.name for f in fields(Sizes)}
    changes = dict(body.get("sizes") or {})
    changes.update({k: v for k, v in body.items() if k in names})
    unknown = set(body) - names - {"seed", "sizes"}
    if unknown:
        raise ValueError(f"unknown seed keys {sorted(unknown)}; size keys: {sorted(names)}")
    return Sizes().with_changes(changes)


def control_router(backend: ZuoraBackend) -> APIRouter:
    router = APIRouter(prefix="/_sandbox", include_in_schema=False)

    def add(method: str, path: str, handler: Callable[[Request], Awaitable[Any]]) -> None:
        router.add_api_route(path, _guard(handler), methods=[method])

    async def health(request: Request) -> Any:
        return {"ok": True, "seed": backend.seed_info, "counts": backend.counts(), "now": backend.now()}

    async def reset(request: Request) -> Any:
        backend.reset()
        return {"reset": True, "counts": backend.counts()}

    async def seed(request: Request) -> Any:
        body = await _json(request)
        value = body.get("seed", 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("seed must be an integer")
        counts = backend.seed(value, sizes_from(body))
        return {"seed": value, "counts": counts}

    async def add_record(request: Request) -> Any:
        record = backend.add_record(request.path_params["type"], await _json(request))
        return JSONResponse(record, 201)

    async def update_record(request: Request) -> Any:
        return backend.update_record(
            request.path_params["type"], request.path_params["id"], await _json(request)
        )

    async def state(request: Request) -> Any:
        return {"records": backend.state(request.path_params["type"])}

    async def state_record(request: Request) -> Any:
        return backend.state_record(request.path_params["type"], request.path_params["id"])

    def period_id(key: str) -> str:
        for period in backend.state("accounting-periods"):
            if key in (period["id"], period["name"]):
                return str(period["id"])
        raise KeyError(f"accounting period {key} does not exist")

    async def fail_trial_balance(request: Request) -> Any:
        body = await _json(request)
        times = body.get("times")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
            raise ValueError("times must be a positive integer or null (until cleared)")
        target = period_id(request.path_params["id"])
        backend.fail_trial_balance(target, body.get("message"), times)
        return {"period": target, "failing": True, "times": times}

    async def clear_trial_balance_failure(request: Request) -> Any:
        target = period_id(request.path_params["id"])
        backend.clear_trial_balance_failure(target)
        return {"period": target, "failing": False}

    async def fail_next_runs(request: Request) -> Any:
        body = await _json(request)
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        backend.fail_next_journal_runs(count, body.get("message"))
        return {"failing_next": count}

    async def set_faults(request: Request) -> Any:
        body = await _json(request)
        raw_rules = body.get("rules", [])
        if not isinstance(raw_rules, list):
            raise ValueError("rules must be an array")
        rules = [FaultRule.parse(r) for r in raw_rules]
        seed_value = body.get("seed")
        if seed_value is not None and (isinstance(seed_value, bool) or not isinstance(seed_value, int)):
            raise ValueError("seed must be an integer")
        backend.gateway.add_faults(rules, replace=bool(body.get("replace", False)), seed=seed_value)
        return {"rules": backend.gateway.faults()}

    async def get_faults(request: Request) -> Any:
        return {"rules": backend.gateway.faults(), "injected": backend.gateway.faults_injected()}

    async def clear_faults(request: Request) -> Any:
        backend.gateway.clear_faults()
        return {"rules": []}

    async def set_config(request: Request) -> Any:
        return asdict(backend.configure(await _json(request)))

    async def get_config(request: Request) -> Any:
        return asdict(backend.config)

    async def clock(request: Request) -> Any:
        body = await _json(request)
        seconds = body.get("advance", 0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("advance must be a non-negative number of seconds")
        return {"now": backend.advance_clock(float(seconds))}

    async def expire_tokens(request: Request) -> Any:
        return {"expired": backend.expire_tokens()}

    async def requests(request: Request) -> Any:
        return backend.gateway.requests()

    async def reset_requests(request: Request) -> Any:
        backend.gateway.reset_requests()
        return backend.gateway.requests()

    async def events(request: Request) -> Any:
        after = int(request.query_params.get("after", "0"))
        return {"events": [asdict(e) for e in backend.events_since(after)]}

    async def idempotency(request: Request) -> Any:
        return {"keys": backend.gateway.idempotency_keys()}

    add("GET", "/health", health)
    add("POST", "/reset", reset)
    add("POST", "/seed", seed)
    add("POST", "/records/{type}", add_record)
    add("PATCH", "/records/{type}/{id}", update_record)
    add("GET", "/state/{type}", state)
    add("GET", "/state/{type}/{id}", state_record)
    add("POST", "/periods/{id}/fail-trial-balance", fail_trial_balance)
    add("DELETE", "/periods/{id}/fail-trial-balance", clear_trial_balance_failure)
    add("POST", "/journal-runs/fail-next", fail_next_runs)
    add("POST", "/faults", set_faults)
    add("GET", "/faults", get_faults)
    add("DELETE", "/faults", clear_faults)
    add("POST", "/config", set_config)
    add("GET", "/config", get_config)
    add("POST", "/clock", clock)
    add("POST", "/tokens/expire", expire_tokens)
    add("GET", "/requests", requests)
    add("POST", "/requests/reset", reset_requests)
    add("GET", "/events", events)
    add("GET", "/idempotency", idempotency)
    return router
