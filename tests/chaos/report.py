"""The figures of a chaos run: what was done to the system, what it survived, how long it took;
printed as one line and written as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figures:
    worker_kills: int = 0
    beat_restarts: int = 0
    web_restarts: int = 0
    redis_flushes: int = 0
    redis_restarts: int = 0
    postgres_restarts: int = 0
    faults: dict[str, dict[str, int]] = field(default_factory=dict)  # API -> kind -> injected
    zuora_token_revocations: int = 0
    zuora_calls: int = 0
    acumatica_calls: int = 0
    callouts: dict[str, Any] = field(default_factory=dict)
    documents: int = 0
    journal_entries: int = 0
    erp_duplicates: int = 0
    lost: int = 0
    problems: int = 0
    settle_seconds: float = 0.0
    wall_seconds: float = 0.0
    notices: dict[str, int] = field(default_factory=dict)  # event -> deliveries the webhook received
    notice_resends: int = 0

    def line(self) -> str:
        faults = "; ".join(
            f"{api} " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
            for api, kinds in sorted(self.faults.items())
        )
        c = self.callouts
        return (
            f"chaos: {self.worker_kills} worker SIGKILLs, beat and web killed {self.beat_restarts} and "
            f"{self.web_restarts}x, Redis flushed {self.redis_flushes}x and restarted {self.redis_restarts}x, "
            f"PostgreSQL restarted {self.postgres_restarts}x; faults injected: {faults}; Zuora tokens revoked "
            f"{self.zuora_token_revocations}x in {self.zuora_calls} Zuora calls ({self.acumatica_calls} Acumatica); "
            f"callouts {c.get('sent', 0)} sent ({c.get('duplicates', 0)} duplicates, {c.get('bad_signatures', 0)} "
            f"bad signatures, {c.get('malformed', 0)} malformed); {self.documents} documents and "
            f"{self.journal_entries} summary journal entries: {self.erp_duplicates} duplicates in the ERP, "
            f"{self.lost} lost; notices {sum(self.notices.values())} received ({self.notice_resends} resent); "
            f"{self.problems} problems; settled {self.settle_seconds:.0f}s after the chaos; "
            f"{self.wall_seconds:.0f}s wall"
        )

    def write(self, path: Path) -> None:
        path.write_text(json.dumps({"line": self.line(), **asdict(self)}, indent=2, sort_keys=True) + "\n")
