"""The processes of `trdbot serve`: the API and the engine in one process (the embedded default), or `--workers N`
API processes and one engine process under a supervisor. Wherever it runs, an engine trades only while it holds
the leader lock (app/leadership.py), so any number of processes and machines share one database safely."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import FastAPI

from app.config import Settings
from app.container import Container
from app.demo import ReplayContainer
from app.logging_setup import configure_logging, uvicorn_log_config
from app.main import create_app
from app.process_tuning import GcPauses, tune_gc

log = logging.getLogger("trdbot.serving")

PUBLIC_URL_ENV = "TRDBOT_PUBLIC_URL"  # what the supervisor tells its processes (the banner's address)
ENGINE_STOP_TIMEOUT_S = 30.0  # a cycle under way is cancelled at the next await; then the lock is released
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
PARENT_CHECK_S = 1.0


def serving_container(settings: Settings, url: str, *, run_engine: bool, engine_apart: bool = False,
                      migrate: bool = True) -> Container:
    """The container `serve` runs: the candle replay on the simulated exchange, else the configured venue."""
    if settings.use_mock_binance and settings.market_source == "replay":
        return ReplayContainer(settings, settings.replay_speed, url, run_engine=run_engine, engine_apart=engine_apart,
                               migrate=migrate)
    return Container(settings, run_engine=run_engine, engine_apart=engine_apart, migrate=migrate)


def tuned(container: Container) -> None:
    """Once a serving process has started: the garbage collector tuned (GC_FREEZE, GC_GEN0_THRESHOLD), its pauses
    measured in /metrics."""
    s = container.settings
    frozen = tune_gc(s.gc_freeze, s.gc_gen0_threshold)
    GcPauses(container.metrics.registry).install()
    log.info("garbage collector: young collections every %d allocations, %d start-up objects frozen",
             s.gc_gen0_threshold, frozen)


def api_worker_app() -> FastAPI:
    """uvicorn's factory in each API process of `serve --workers N`: the settings of the environment the supervisor
    prepared, no engine (it runs in its own process), no migrations (the supervisor applied them)."""
    settings = Settings()
    configure_logging(settings.log_dir, settings.log_level)
    container = serving_container(settings, os.environ.get(PUBLIC_URL_ENV, ""), run_engine=False,
                                  engine_apart=True, migrate=False)
    return create_app(container, ready=tuned)


# ---------------------------------------------------------------- the engine process

async def run_engine(container: Container, parent_pid: int | None = None) -> None:
    """The engine alone (no HTTP): it stands for leader and trades while it leads, until SIGTERM or SIGINT, or until
    the supervisor that started it is gone (an orphan must not keep the lock)."""
    if container.settings.engine_nice:
        os.nice(container.settings.engine_nice)  # a cycle takes seconds; a request should take milliseconds
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await container.start()
    tuned(container)
    watcher = asyncio.create_task(_watch_parent(parent_pid, stopping)) if parent_pid else None
    try:
        await stopping.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await container.stop()


async def _watch_parent(parent_pid: int, stopping: asyncio.Event) -> None:
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_CHECK_S)
    log.error("the supervisor (pid %d) is gone: the engine stops", parent_pid)
    stopping.set()


# ---------------------------------------------------------------- the supervisor

@dataclass
class Listen:
    host: str
    port: int
    forwarded_allow_ips: str | None = None


class EngineProcess:
    """`trdbot engine` as a child of the supervisor, started again (with a growing pause) whenever it ends."""

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._keep_alive, name="engine-process", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        # a session of its own: a terminal's Ctrl+C reaches the supervisor, which stops the engine in order
        self.process = subprocess.Popen(self.command, start_new_session=True)
        log.info("engine process started [%d]", self.process.pid)

    def _keep_alive(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            assert self.process is not None
            code = self.process.wait()
            if self._stopping.is_set():
                return
            pause = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
            log.error("engine process [%d] ended with %s: starting another in %.0f s", self.process.pid, code, pause)
            failures += 1
            if self._stopping.wait(pause):
                return
            self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=ENGINE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def supervise(settings: Settings, listen: Listen, workers: int, public_url: str,
              environment: dict[str, str] | None = None) -> int:
    """`serve --workers N`: the migrations once, then one engine process and N API processes on one socket
    (uvicorn's process manager: it restarts a worker that dies or hangs), until SIGINT or SIGTERM. `environment`
    holds the command line's settings, which every process reads from its environment."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from app.db import upgrade

    upgrade(settings.database_url)
    os.environ.update({**(environment or {}), PUBLIC_URL_ENV: public_url})  # this process only supervises
    engine = EngineProcess([sys.executable, "-m", "app.cli", "engine", "--no-migrate",
                            "--parent-pid", str(os.getpid()), "--url", public_url])
    config = uvicorn.Config("app.serving:api_worker_app", factory=True, host=listen.host, port=listen.port,
                            workers=workers, log_config=uvicorn_log_config(), access_log=settings.access_log,
                            proxy_headers=listen.forwarded_allow_ips is not None,
                            forwarded_allow_ips=listen.forwarded_allow_ips)
    socket = config.bind_socket()
    engine.start()
    try:
        Multiprocess(config, sockets=[socket]).run()
    finally:
        engine.stop()
        with contextlib.suppress(OSError):
            socket.close()
    return 0
