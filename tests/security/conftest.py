"""Helpers of the security suite: clients at chosen addresses, a container on a simulated clock, `trdbot serve`
as a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.main import create_app

REPO = Path(__file__).resolve().parents[2]
SERVE_SECRET = "serve-test-secret-0123456789-0123456789-abcdef"
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def client_at(app: FastAPI, address: str) -> httpx.AsyncClient:
    """A client whose requests come from `address` (what the throttle sees as the peer)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://test")


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


@pytest.fixture
async def clocked_app(settings: Settings, clock: SimulatedClock) -> AsyncIterator[FastAPI]:
    """The app on a simulated clock (throttle windows and backoffs are waited out by advancing it)."""
    container = Container(settings, clock=clock)
    yield create_app(container)
    await container.db.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServeProcess:
    process: subprocess.Popen[bytes]
    url: str
    workdir: Path
    output: Path

    def stop(self) -> str:
        """Stops the server; returns everything it printed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.output.read_text(errors="replace")


def serve_env(workdir: Path, **extra: str) -> dict[str, str]:
    drop = ("DATABASE_URL", "JWT_SECRET", "JWT_SECRET_FILE", "CREDENTIALS_KEY", "CREDENTIALS_KEY_FILE", "LOG_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/var/serve.db", LOG_DIR=str(workdir / "logs"),
               USE_MOCK_BINANCE="true", ARGON2_TIME_COST="1", ARGON2_MEMORY_COST="8192", **extra)
    return env


def start_serve(workdir: Path, env: dict[str, str], timeout_s: float = 60) -> ServeProcess:
    """`trdbot serve` in `workdir`; returns once /health answers, or once the process has exited."""
    port = free_port()
    output = workdir / "serve.log"
    with output.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=workdir,
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    served = ServeProcess(process, f"http://127.0.0.1:{port}", workdir, output)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{served.url}/health", timeout=2).status_code == 200:
                return served
        except httpx.TransportError:
            time.sleep(0.2)
    return served


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One `trdbot serve` (paper mode, a proper JWT_SECRET) for the tests that need a real server process."""
    workdir = tmp_path_factory.mktemp("serve")
    process = start_serve(workdir, serve_env(workdir, JWT_SECRET=SERVE_SECRET))
    if process.process.poll() is not None:
        pytest.fail(f"trdbot serve exited with {process.process.returncode}:\n{process.stop()}")
    yield process
    process.stop()
