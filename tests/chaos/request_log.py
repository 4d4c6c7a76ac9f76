"""A log of the API requests a sandbox served, for the chaos suite.

:class:`RequestLog` wraps a sandbox's ASGI app and notes the method, path and decoded query string
of every request outside its control plane (``/_sandbox``); nothing else about the sandbox
changes. The suite reads the lines to show that no request ever named an object that only a
refused callout named.
"""

from __future__ import annotations

import threading
from urllib.parse import unquote_plus

from sandbox.contract import ASGIApp, Receive, Scope, Send


class RequestLog:
    """ASGI middleware: records ``"METHOD /path?decoded query"`` of each API request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._lines: list[str] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = str(scope.get("path", ""))
            if not path.startswith("/_sandbox"):
                query = unquote_plus(bytes(scope.get("query_string", b"")).decode("latin-1"))
                with self._lock:
                    self._lines.append(f"{scope.get('method', '')} {path}" + (f"?{query}" if query else ""))
        await self.app(scope, receive, send)

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def forget(self) -> None:
        with self._lock:
            self._lines.clear()
