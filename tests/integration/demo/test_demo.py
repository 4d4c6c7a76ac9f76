"""The README's first command, at a small size: the demo runs end to end and reports success."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[3]


# Command lines only the demo's child processes have.
DEMO_MARKERS = ("cli.main sandbox", "worker.web:app", "demo0@", "demo1@")


def test_demo_small_runs_sync_and_close_and_reconciles(tmp_path, redis_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBRIDGE_")}
    env.update(LEDGERBRIDGE_REDIS_URL=redis_url, COLUMNS="160", PYTHONUNBUFFERED="1")
    workdir = tmp_path / "demo"

    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--scale", "0.04", "--workdir", str(workdir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    assert "everything posted once, marked and reconciled" in out
    assert re.search(r"done: close run \d+ of 'December 2024' posted, marked and reconciled", out)
    rows = dict(re.findall(r"│ (account|invoice|payment|refund|credit memo|debit memo)\s+│\s+(\d+) │", out))
    assert set(rows) == {"account", "invoice", "payment", "refund", "credit memo", "debit memo"}
    assert all(int(n) > 0 for n in rows.values())
    assert re.search(r"\d+/\d+ pushed invoices posted to Acumatica and marked in Zuora", out)
    for name in ("zuora-sandbox", "acumatica-sandbox", "web", "worker-0", "worker-1", "beat"):
        assert (workdir / f"{name}.log").exists()
    leftovers = [
        p for p in psutil.process_iter(["cmdline"]) if str(workdir) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == [], f"demo left processes running: {leftovers}"
