"""`trdbot demo` as a subprocess for the browser tests: a fresh working directory, a free port, healthy or failed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"trdbot demo exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"trdbot demo was not healthy within {timeout_s} s:\n{log.read_text()}")


@contextmanager
def running_demo(workdir: Path, speed: float, extra_env: Mapping[str, str] | None = None) -> Iterator[str]:
    """`trdbot demo` in `workdir` (a fresh one starts with an empty ./var) at `speed`; yields its URL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "JWT_SECRET", "CREDENTIALS_KEY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra_env or {})
    log = workdir / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "demo", "--port", str(port), "--speed", f"{speed:g}"],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def demo_token(url: str, workdir: Path) -> str:
    """The demo user's bearer token (its password is in the demo's ./var)."""
    password = (workdir / "var" / "demo-password.txt").read_text().strip()
    answer = httpx.post(f"{url}/auth/login", json={"username": "demo", "password": password}, timeout=10)
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def _has_history(url: str, token: str, closed: int) -> bool:
    headers = {"Authorization": f"Bearer {token}"}
    trades = httpx.get(f"{url}/trading/trades", params={"status": "closed", "limit": 1}, headers=headers, timeout=10)
    positions = httpx.get(f"{url}/trading/positions", headers=headers, timeout=10)
    return int(trades.json()["total"]) >= closed and len(positions.json()) >= 1


@contextmanager
def seeded_demo(workdir: Path, closed: int = 3, timeout_s: float = 120) -> Iterator[str]:
    """`trdbot demo` whose demo user has at least `closed` closed trades and an open position: a fast replay trades
    until then and stops; the same ./var then replays at 1x, so the open position stays open while the tests look."""
    with running_demo(workdir, speed=3000) as url:
        token = demo_token(url, workdir)
        deadline = time.monotonic() + timeout_s
        while not _has_history(url, token, closed):
            if time.monotonic() > deadline:
                pytest.fail(f"the demo user had not {closed} closed trades and an open position in {timeout_s} s")
            time.sleep(0.5)
    with running_demo(workdir, speed=1) as url:
        yield url
