"""Debian's chromium for the browser tests (``scripts/browser`` installs it): where it is, and
the flags it runs headless with on a machine without a screen."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The chromium executable; fails (never skips) the test when it is missing."""
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        pytest.fail(
            "chromium is not installed: run scripts/browser (it runs apt-get install -y chromium "
            "chromium-driver); this test does not skip"
        )
    return path
