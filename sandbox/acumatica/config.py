"""The sandbox's knobs: endpoint, credentials, licence limits, latency and document preferences.

One mutable object per backend, changed through the control plane (``POST /_sandbox/config``)
while the server runs; readers take a snapshot with ``copy()``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from typing import Any

DEFAULT_ENDPOINT = "Default/24.200.001"
DEFAULT_USERNAME = "admin"
DEFAULT_PASSWORD = "sandbox"  # noqa: S105 - a fixed local sandbox credential, not a secret
DEFAULT_TENANT = "Company"
DEFAULT_CLIENT_ID = "6B3A1F6E-2C4D-4F4B-9A57-5E2B4C1D0A11@Company"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - local sandbox credential

_ENDPOINT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/\d+\.\d+\.\d+$")
_OFFSET = re.compile(r"^([+-])(\d\d):(\d\d)$")


class ConfigError(ValueError):
    """A control-plane config change that names an unknown knob or a bad value."""


@dataclass
class SandboxConfig:
    """Every knob, with the real product's defaults where the API notes give one."""

    endpoint: str = DEFAULT_ENDPOINT
    username: str = DEFAULT_USERNAME
    password: str = field(default=DEFAULT_PASSWORD, repr=False)
    tenant: str = DEFAULT_TENANT
    site_path: str = ""  # e.g. "/AcumaticaERP" when IIS hosts the site in a virtual directory
    build_version: str = ""  # "" -> derived from the endpoint version
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = field(default=DEFAULT_CLIENT_SECRET, repr=False)

    # Sessions and tokens (sections 2.1, 2.2, 5.2)
    max_sessions: int = 2
    session_idle_seconds: float = 600.0
    token_lifetime_seconds: int = 3600

    # Licence limits (section 5.2); None = unlimited, as on a trial licence.
    requests_per_minute: int | None = None
    max_concurrent: int | None = None
    queue_size: int = 20
    max_queue_wait_seconds: float = 600.0
    per_minute_delay: bool = True  # the 50% rule: delay each request once half the minute is used
    latency_ms: float = 0.0  # processing time of every licensed request, spent holding a core

    # Long-running actions (section 4.4): N polls answer 202, then 204; 0 = 204 at once.
    action_polls: int = 1
    action_seconds: float | None = None  # also complete after this long, polled or not

    # Preferences that change document behaviour (section 6, pitfalls 7 and 9)
    hold_on_entry: bool = True  # AR/GL "Hold documents on entry"
    auto_post: bool = True  # GL "Automatically Post on Release": Posted, else Unposted
    manual_numbering: bool = False  # use the ReferenceNbr/BatchNbr the client sends
    timezone_offset: str = "+00:00"  # the server's zone, used for date-only fields
    business_date: str | None = None  # "YYYY-MM-DD"; None = today in the server's zone

    def copy(self) -> SandboxConfig:
        return dataclasses.replace(self)

    @property
    def endpoint_name(self) -> str:
        return self.endpoint.split("/", 1)[0]

    @property
    def endpoint_version(self) -> str:
        return self.endpoint.split("/", 1)[1]

    @property
    def tz(self) -> timezone:
        match = _OFFSET.match(self.timezone_offset)
        assert match is not None  # checked by validate()
        sign = -1 if match.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))

    @property
    def build(self) -> str:
        if self.build_version:
            return self.build_version
        major = self.endpoint_version.split(".", 1)[0]
        return f"{major}.211.0001"

    def validate(self) -> None:
        if not _ENDPOINT.match(self.endpoint):
            raise ConfigError(f"endpoint must look like 'Default/24.200.001', got {self.endpoint!r}")
        if not _OFFSET.match(self.timezone_offset):
            raise ConfigError(f"timezone_offset must look like '+03:00', got {self.timezone_offset!r}")
        if self.site_path and (not self.site_path.startswith("/") or self.site_path.endswith("/")):
            raise ConfigError(f"site_path must start with '/' and not end with one, got {self.site_path!r}")
        for name in ("max_sessions", "queue_size", "token_lifetime_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        for name in ("requests_per_minute", "max_concurrent"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 (or null for unlimited)")
        if self.action_polls < 0:
            raise ConfigError("action_polls must not be negative")

    def update(self, changes: dict[str, Any]) -> None:
        """Apply control-plane changes; unknown names and bad values raise ``ConfigError``."""
        names = {item.name for item in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        declared = {item.name: str(item.type) for item in dataclasses.fields(self)}
        for name, value in changes.items():
            if not _type_ok(declared[name], value):
                raise ConfigError(f"{name} must be {declared[name]}, got {value!r}")
        candidate = dataclasses.replace(self, **changes)
        candidate.validate()
        for name in changes:
            setattr(self, name, getattr(candidate, name))

    def public(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_ok(declared: str, value: Any) -> bool:
    for option in (part.strip() for part in declared.split("|")):
        if option == "None" and value is None:
            return True
        if option == "bool" and isinstance(value, bool):
            return True
        if option == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if option == "str" and isinstance(value, str):
            return True
    return False
