"""`trdbot serve --workers 2` and `trdbot engine` as real processes: two API processes and one engine answer and
trade together, and when the leading engine is killed another process leads within one cycle."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parents[1]
SECRET = "workers-test-secret-0123456789-0123456789-abcdef"
INTERVAL_S = 3  # TRADING_INTERVAL_SECONDS of market time; the replay runs at 1x, so also of wall time
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})Z ")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(database_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    drop = ("DATABASE_URL", "JWT_SECRET", "JWT_SECRET_FILE", "LOG_DIR", "API_WORKERS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONPATH=str(REPO), DATABASE_URL=database_url, JWT_SECRET=SECRET, LOG_DIR=str(workdir / "logs"),
               USE_MOCK_BINANCE="true", ARGON2_TIME_COST="1", ARGON2_MEMORY_COST="8192", REPLAY_SPEED="1",
               TRADING_INTERVAL_SECONDS=str(INTERVAL_S), LEADER_RETRY_SECONDS="0.5", HANDOFF_POLL_SECONDS="0.2",
               **extra)
    return env


def _start(args: list[str], env: dict[str, str], workdir: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    output = workdir / f"{name}.log"
    with output.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "app.cli", *args], cwd=workdir, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    return process, output


def _wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _children(pid: int) -> list[str]:
    """The command lines of a process's children (Linux /proc)."""
    listed = Path(f"/proc/{pid}/task/{pid}/children")
    commands = []
    for child in listed.read_text().split() if listed.exists() else []:
        with_args = Path(f"/proc/{child}/cmdline")
        if with_args.exists():
            commands.append(with_args.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return commands


def _lines(path: Path, marker: str) -> list[datetime]:
    """When each line of a process's output holding `marker` was written."""
    stamps = []
    for line in path.read_text(errors="replace").splitlines():
        found = STAMP.match(line)
        if found and marker in line:
            stamps.append(datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC))
    return stamps


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def test_serve_with_two_workers_answers_and_feeds_the_engines_events(clean_database: str, workdir: Path) -> None:
    if clean_database.endswith(":memory:"):
        pytest.skip("an in-memory database belongs to one process")
    port = _free_port()
    serve, output = _start(["serve", "--workers", "2", "--port", str(port)], _env(clean_database, workdir), workdir,
                           "serve")
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            assert serve.poll() is None, output.read_text()
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        _wait_for(healthy, 90, "/health")
        children = _children(serve.pid)
        assert sum("app.cli engine" in c for c in children) == 1, children
        assert sum("multiprocessing.spawn" in c for c in children) == 2, children

        with httpx.Client(base_url=url, timeout=10) as client:
            body = client.post("/auth/register", json={"username": "alice", "email": "alice@example.com",
                                                        "password": "correct horse"}).json()
            headers = {"Authorization": f"Bearer {body['access_token']}"}
            user_id = body["user"]["id"]
            assert client.get("/portfolio", headers=headers).json()["total_value_usdt"] == "10000"
            assert client.get("/trading/trades?limit=50", headers=headers).json() == {"items": [], "total": 0}
            with connect(f"ws://127.0.0.1:{port}/ws/{user_id}?token={body['access_token']}") as feed:
                assert client.post("/trading/start", headers=headers).status_code == 200
                types: list[str] = []
                deadline = time.monotonic() + 60
                while "analysis" not in types and time.monotonic() < deadline:
                    types.append(json.loads(feed.recv(timeout=max(0.1, deadline - time.monotonic())))["type"])
        assert "analysis" in types, f"the engine process's analyses never reached the socket: {types}"
    finally:
        _stop(serve)
    assert not _children(serve.pid)
    log = output.read_text()
    assert "leads: the engine runs here" in log and log.count("Application startup complete") == 2


def test_killing_the_leading_engine_hands_the_loop_to_the_standby_within_one_cycle(
    clean_database: str, workdir: Path
) -> None:
    if clean_database.endswith(":memory:"):
        pytest.skip("an in-memory database belongs to one process")
    env = _env(clean_database, workdir)
    first = _start(["engine"], env, workdir, "first")
    _wait_for(lambda: "leads" in first[1].read_text(), 60, "the first engine to lead")
    second = _start(["engine", "--no-migrate"], env, workdir, "second")
    processes = {"first": first, "second": second}
    try:
        _wait_for(lambda: "stands by" in second[1].read_text(), 60, "the second engine to stand by")
        _wait_for(lambda: _lines(first[1], "cycle=") != [], 30, "a cycle of the leader")
        assert _lines(second[1], "cycle=") == [], "the standby ran a cycle while the leader was alive"

        first[0].send_signal(signal.SIGKILL)
        first[0].wait()
        killed_at = datetime.now(UTC)
        _wait_for(lambda: _lines(second[1], "leads") != [], 30, "the standby to lead")
        _wait_for(lambda: _lines(second[1], "cycle=") != [], 30, "a cycle of the new leader")
    finally:
        for process, _ in processes.values():
            _stop(process)
    took_over_s = (_lines(second[1], "leads")[0] - killed_at).total_seconds()
    assert took_over_s < INTERVAL_S, f"the standby led {took_over_s:.1f} s after the leader died"
    assert max(_lines(first[1], "cycle=")) < killed_at <= min(_lines(second[1], "cycle="))


def test_uvicorn_app_main_runs_the_engine_as_serve_does(clean_database: str, workdir: Path) -> None:
    """The seed's quick start, `uvicorn app.main:app`, is `trdbot serve` in one process: the API and the loop."""
    if clean_database.endswith(":memory:"):
        pytest.skip("the test reads the database the server wrote")
    port = _free_port()
    output = workdir / "uvicorn.log"
    with output.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)], cwd=workdir,
                                  env=_env(clean_database, workdir), stdout=out, stderr=subprocess.STDOUT)
    try:
        def healthy() -> bool:
            assert server.poll() is None, output.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        _wait_for(healthy, 90, "/health")
        _wait_for(lambda: _lines(output, "cycle=") != [], 60, "a cycle of the engine")
    finally:
        _stop(server)
    assert "leads: the engine runs here" in output.read_text()


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_a_taken_port_is_refused_with_the_option_that_fixes_it(command: str, workdir: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = _env("sqlite+aiosqlite:///" + str(workdir / "db.sqlite"), workdir)
        done = subprocess.run([sys.executable, "-m", "app.cli", command, "--port", str(port)], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"port {port} on 127.0.0.1 is taken" in done.stderr and f"--port {port + 1}" in done.stderr
    assert "http://" not in done.stdout, "no address is printed that is not served"
