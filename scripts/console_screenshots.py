"""The README's screenshots of the Finance console (run through ``scripts/screenshots``).

Starts ``ledgerbridge demo --serve --approval close`` at a small scale (its own work folder and
Redis database), reads the console's address, the approver's password and the close run from
what it prints, signs in with headless Debian chromium through Playwright, and saves the overview
and the close's approval page as PNG files. The demo is stopped at the end, whatever happens; every
wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 860}
APPROVER = "controller"  # cli/demo_stack.py DEMO_USERS


class Demo:
    """``ledgerbridge demo --serve`` as a child process whose output is read line by line."""

    def __init__(self, workdir: Path, scale: float, redis_url: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBRIDGE_")}
        env.update(LEDGERBRIDGE_REDIS_URL=redis_url, COLUMNS="200", PYTHONUNBUFFERED="1", NO_COLOR="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "demo", "--scale", str(scale), "--serve", "--approval", "close",
             "--workdir", str(workdir)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line (seen or to come) that matches ``pattern``."""
        regex = re.compile(pattern)
        for line in self.seen:
            if found := regex.search(line):
                return found
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                tail = "\n".join(self.seen[-30:])
                raise SystemExit(
                    f"the demo ended (exit {self.proc.wait()}) before printing /{pattern}/:\n{tail}"
                )
            self.seen.append(line)
            print(line, flush=True)
            if found := regex.search(line):
                return found
        raise SystemExit(f"the demo did not print /{pattern}/ within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the demo stops every process it started
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def take(url: str, password: str, run_id: int, *, out: Path, profile: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    overview, approval = out / "console-overview.png", out / "console-approval.png"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS, viewport=VIEWPORT
        )
        try:
            context.set_default_timeout(20_000)
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(f"{url}/console/login")
            page.fill('input[name="username"]', APPROVER)
            page.fill('input[name="password"]', password)
            page.click('[data-testid="sign-in"]')
            page.wait_for_selector('[data-testid="overview"]')
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(overview), full_page=True)
            page.goto(f"{url}/console/closes/{run_id}")
            panel = page.wait_for_selector('[data-testid="approval"]')
            page.wait_for_load_state("networkidle")
            box = panel.bounding_box()
            assert box is not None
            # The run's status, its steps and the approval panel; the entries and timeline below are left out.
            bottom = box["y"] + box["height"] + 16
            page.screenshot(
                path=str(approval), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": bottom}
            )
        finally:
            context.close()
    return [overview, approval]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="folder for the PNG files")
    parser.add_argument("--scale", type=float, default=0.05, help="the demo's --scale")
    parser.add_argument("--workdir", type=Path, default=REPO / ".ledgerbridge" / "screenshots")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("LEDGERBRIDGE_SCREENSHOTS_REDIS_URL", "redis://127.0.0.1:6379/12"),
        help="Redis for the demo (a database of its own, so a demo running beside it is not disturbed)",
    )
    args = parser.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        raise SystemExit("chromium is not installed: run scripts/browser")
    args.out.mkdir(parents=True, exist_ok=True)
    demo = Demo(args.workdir.resolve(), args.scale, args.redis_url)
    try:
        run_id = int(demo.wait_for(r"close run (\d+) started for", timeout=600)[1])
        url = demo.wait_for(r"^(http://127\.0\.0\.1:\d+)/console/$", timeout=600)[1]
        password = demo.wait_for(rf"sign in as {APPROVER} / (\S+)", timeout=60)[1]
        demo.wait_for(r"stay up for the console", timeout=60)
        saved = take(
            url, password, run_id, out=args.out, profile=args.workdir / "chromium-profile", chromium=chromium
        )
    finally:
        demo.stop()
    for path in saved:
        print(f"saved {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


if __name__ == "__main__":
    main()
