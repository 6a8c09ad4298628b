"""The processes of `trdbot serve`: the API and the engine in one process (the embedded default), or `--workers N`
API processes and one engine process under a supervisor. Wherever it runs, an engine trades only while it holds
the leader lock (app/leadership.py), so any number of processes and machines share one database safely."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
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


# ---------------------------------------------------------------- a worker (ENGINE_DECIDE_ON=workers)

async def run_worker(settings: Settings, concurrency: int = 1) -> None:
    """`trdbot worker`: decides the batches of users the leading engine queues, on this machine or any other, until
    SIGTERM or SIGINT (the batch under way is finished first). No loop, no API, no migrations."""
    from datetime import UTC, datetime

    from app.workers import BatchDecider, CycleClock, ensure_queue_schema, task_app, worker_options

    replay = settings.use_mock_binance and settings.market_source == "replay"
    clock = CycleClock(datetime(2000, 1, 1, tzinfo=UTC)) if replay else None  # set to each batch's cycle time
    container = Container(settings, market_clock=clock, migrate=False)
    await container.start(migrate=False)
    await ensure_queue_schema(settings.database_url)
    decide = BatchDecider(container.bot, container.db.engine, clock, settings.worker_stall_seconds)
    app = task_app(settings.database_url, decide)
    log.info("worker pid %d: deciding batches (%d at a time)", os.getpid(), concurrency)
    try:
        async with app.open_async():
            await app.run_worker_async(**worker_options(settings.worker_heartbeat_seconds,
                                                        settings.worker_lease_seconds, concurrency))
    finally:
        await container.stop()


# ---------------------------------------------------------------- the supervisor

STARTUP_FAILURE = 3  # uvicorn's exit code when the app cannot start: starting it again would fail the same way
BACKLOG = 2048


@dataclass
class Listen:
    host: str
    port: int
    forwarded_allow_ips: str | None = None
    access_log: bool = True


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket of the address's SO_REUSEPORT group: each API process accepts on one of its own, and the kernel
    spreads new connections over them by their addresses. (One socket shared by every process hands most
    connections to whichever process happens to wait on it: measured, all 12 keep-alive connections of a load test
    on one of two workers, whose queue grew to seconds while the other idled.)"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def _refuse_a_taken_port(host: str, port: int) -> None:
    """SO_REUSEPORT would share a port with another server of the same user: bind it alone first (OSError: taken)."""
    if port:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))


def port_problem(host: str, port: int, command: str) -> str | None:
    """Why `command` cannot listen on host:port, with the option that fixes it (None: it can). Asked before anything
    prints an address, so no address is shown that is not served."""
    try:
        _refuse_a_taken_port(host, port)
    except OSError as e:
        taken = e.errno == errno.EADDRINUSE
        why = "is taken (another server runs there?)" if taken else f"cannot be used ({e.strerror or e})"
        other = port + 1 if port < 65535 else 8001
        hint = f'choose another with --port, e.g. `trdbot {command} --port {other}`'
        if command == "demo":
            hint += f' or `make demo DEMO_ARGS="--port {other}"`'
        return f"trdbot {command}: port {port} on {host} {why}; {hint}"
    return None


def _api_worker(listen: Listen, sock: socket.socket) -> None:
    """An API process: uvicorn on the socket it was given, the app from `api_worker_app`; it stops (as on SIGTERM)
    when the supervisor is gone."""
    import uvicorn

    parent = os.getppid()
    threading.Thread(target=_stop_without_parent, args=(parent,), name="parent-watch", daemon=True).start()

    config = uvicorn.Config("app.serving:api_worker_app", factory=True, host=listen.host, port=listen.port,
                            log_config=uvicorn_log_config(), access_log=listen.access_log, backlog=BACKLOG,
                            proxy_headers=listen.forwarded_allow_ips is not None,
                            forwarded_allow_ips=listen.forwarded_allow_ips)
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])


def _stop_without_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_S)
    os.kill(os.getpid(), signal.SIGTERM)


class ApiWorkers:
    """N API processes, each on a listening socket of its own (bound here, so a replacement takes over its
    socket's queue), started again when one ends."""

    def __init__(self, listen: Listen, workers: int) -> None:
        _refuse_a_taken_port(listen.host, listen.port)
        first = listening_socket(listen.host, listen.port)
        port = first.getsockname()[1]
        self.listen = Listen(listen.host, port, listen.forwarded_allow_ips, listen.access_log)
        self.sockets = [first, *(listening_socket(listen.host, port) for _ in range(workers - 1))]
        self._spawn = multiprocessing.get_context("spawn")
        self.processes: list[multiprocessing.process.BaseProcess] = []

    def _start(self, sock: socket.socket) -> multiprocessing.process.BaseProcess:
        process = self._spawn.Process(target=_api_worker, args=(self.listen, sock), name="trdbot-api")
        process.start()
        log.info("API process started [%s]", process.pid)
        return process

    def run(self, stopping: threading.Event) -> int:
        """Keep every worker running until `stopping` is set (or a worker cannot start); returns an exit code."""
        self.processes = [self._start(sock) for sock in self.sockets]
        code = 0
        while not stopping.wait(0.5):
            for index, process in enumerate(self.processes):
                if process.is_alive():
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    log.error("API process [%s] could not start: stopping", process.pid)
                    stopping.set()
                    code = STARTUP_FAILURE
                    break
                log.error("API process [%s] ended with %s: starting another", process.pid, process.exitcode)
                self.processes[index] = self._start(self.sockets[index])
        self.stop()
        return code

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests under way, then the lifespan ends
        for process in self.processes:
            process.join(ENGINE_STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
        for sock in self.sockets:
            sock.close()


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
    """`serve --workers N`: the migrations once, then one engine process and N API processes, until SIGINT or
    SIGTERM. `environment` holds the command line's settings, which every process reads from its environment."""
    from app.db import upgrade

    try:  # `trdbot serve` has said already when the port is taken (port_problem); this is the binding itself
        api = ApiWorkers(listen, workers)
    except OSError as e:
        log.error("cannot listen on %s:%s: %s", listen.host, listen.port, e)
        return 1
    upgrade(settings.database_url)
    os.environ.update({**(environment or {}), PUBLIC_URL_ENV: public_url})  # this process only supervises
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    log.info("serving on http://%s:%d with %d API processes", listen.host, api.listen.port, workers)
    engine = EngineProcess([sys.executable, "-m", "app.cli", "engine", "--no-migrate",
                            "--parent-pid", str(os.getpid()), "--url", public_url])
    engine.start()
    try:
        return api.run(stopping)
    finally:
        engine.stop()
