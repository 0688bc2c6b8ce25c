"""Helpers of the browser tests: starting and stopping the app server, timings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from app_support import ROOT, Installation
from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
COOKIE = "finflow_session"  # finflow_app.server.COOKIE


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    ready_seconds: float
    ready_at: float


@dataclass
class Timings:
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.values.setdefault(name, []).append(round(seconds, 3))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(env: dict[str, str], log: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "serve.py"), "--server.port", str(port),
           "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats",
           "false", "--server.fileWatcherType", "none"]
    started = time.monotonic()
    out = open(log, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = started + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as resp:
                if resp.read().decode().strip() == "ok":
                    now = time.monotonic()
                    return Server(url, proc, log, now - started, now)
        except OSError:
            pass
        time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError(f"streamlit did not become healthy in 60 s: {log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def server_env(inst: Installation) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINFLOW_")}
    env.update({k: inst.env[k] for k in ("FINFLOW_HOME", "FINFLOW_CONFIG", "FINFLOW_SECRET_KEY")})
    env["PYTHONPATH"] = str(ROOT)
    env["FINFLOW_LOG_TIMINGS"] = "1"  # server-side seconds per run, in the server log
    return env


def session_cookie(page: Page, timeout: float = 10.0) -> dict:  # type: ignore[type-arg]
    """The session cookie, once the page has swapped its hand-over code for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c for c in page.context.cookies() if c["name"] == COOKIE]
        if found:
            return found[0]
        page.wait_for_timeout(100)
    raise AssertionError(f"no {COOKIE} cookie after sign-in: {page.context.cookies()}")
