"""Backtests users start through the API: each queued run becomes a `trdbot backtest` process (never work in the
API's event loop), at most BACKTEST_CONCURRENCY at a time, its progress read from its progress bar, its outcome
(report.json's headline figures, or why it failed) written back to its row."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.background import cancel_and_wait
from app.backtest.report import read_report
from app.config import Settings
from app.domain.clock import Clock
from app.domain.records import BacktestRun, BacktestStatus
from app.repositories import UnitOfWorkFactory

log = logging.getLogger("trdbot.backtests")

INTERRUPTED = "interrupted by a restart: start it again"
PROGRESS = re.compile(r"(\d+)/(\d+) \[")  # tqdm's "  1071/8929 [00:01<..."
SUMMARY_FIELDS = ("start_balance", "final_balance", "total_return_pct", "max_drawdown_pct", "trades", "wins",
                  "losses", "win_rate_pct", "profit_total", "profit_factor", "expectancy", "fees_paid", "sharpe")
CONFIG_FILE = "config.json"  # the run's trading-config fields, written before it starts
ERROR_LINES = 12  # the last lines of the run's stderr kept as its error
CommandBuilder = Callable[[BacktestRun, Path, Settings], Sequence[str]]


def backtest_command(run: BacktestRun, out: Path, settings: Settings) -> list[str]:
    """`trdbot backtest` for a run, with the interpreter serving the API (its environment and packages)."""
    analyzer = str(run.config.get("analyzer") or "rules")
    return [sys.executable, "-m", "app.cli", "backtest", "--symbols", ",".join(run.symbols),
            "--start", run.start.isoformat(), "--end", run.end.isoformat(), "--balance", str(run.balance),
            "--analyzer", analyzer, "--config", str(out / CONFIG_FILE), "--data", str(settings.data_dir), "--out", str(out),
            "--workers", str(settings.backtest_workers or 0), "--allow-errors"]


def summary_of(report: dict[str, Any]) -> dict[str, str | int | None]:
    """report.json's headline figures, numbers as decimal strings (counts stay integers)."""
    def figure(value: object) -> str | int | None:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        return str(value)

    return {name: figure(report.get(name)) for name in SUMMARY_FIELDS}



class RunDeleted(Exception):
    """The run's row is gone: its user deleted it while it ran."""


class BacktestJobs:
    """Claims queued runs and runs each in a process of its own. `start` first fails the runs a previous process
    left `running` (their process died with it)."""

    def __init__(self, uow: UnitOfWorkFactory, settings: Settings, clock: Clock,
                 command: CommandBuilder = backtest_command) -> None:
        self.uow, self.settings, self.clock, self.command = uow, settings, clock, command
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: dict[int, asyncio.Task[None]] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name="backtest-jobs")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        for task in list(self._running.values()):
            await cancel_and_wait(task)
        self._running.clear()

    def poke(self) -> None:
        """A run was queued in this process: look now, not at the next poll."""
        self._wake.set()

    async def cancel(self, run_id: int) -> None:
        """Stop a run of this process (its user deleted it); a run of another process stops at its next progress."""
        await cancel_and_wait(self._running.pop(run_id, None))

    async def _serve(self) -> None:
        async with self.uow() as uow:
            if failed := await uow.backtests.fail_running(self.clock.now(), INTERRUPTED):
                log.warning("%d backtest(s) were running when the service stopped: marked failed", failed)
            await uow.commit()
        while True:
            try:
                await self._start_queued()
            except Exception:  # the runner outlives a bad round (a database hiccup); the next one looks again
                log.exception("backtest runner: a round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.backtest_poll_seconds)
            self._wake.clear()

    async def _start_queued(self) -> None:
        while len(self._running) < self.settings.backtest_concurrency:
            async with self.uow() as uow:
                run = await uow.backtests.claim_next(self.clock.now())
                await uow.commit()
            if run is None:
                return
            self._running[run.id] = asyncio.create_task(self._run(run), name=f"backtest-{run.id}")

    async def _run(self, run: BacktestRun) -> None:
        """One run, start to its row's end (off the event loop for every file it reads or writes)."""
        out = self.settings.backtest_run_dir(run.user_id, run.id)
        try:
            status, summary, error = await self._execute(run, out)
        except RunDeleted:
            await asyncio.to_thread(shutil.rmtree, out, True)  # deleted by its user: nothing of it is kept
            return
        except Exception as e:
            log.exception("backtest %d failed to run", run.id)
            status, summary, error = BacktestStatus.FAILED, None, f"the run could not be started: {e}"
        finally:
            self._running.pop(run.id, None)
            self._wake.set()
        async with self.uow() as uow:
            await uow.backtests.finish(run.id, status, self.clock.now(), summary, error)
            await uow.commit()

    async def _execute(self, run: BacktestRun, out: Path) -> tuple[BacktestStatus, dict[str, Any] | None, str | None]:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        await asyncio.to_thread((out / CONFIG_FILE).write_text, json.dumps(run.config))
        argv = self.command(run, out, self.settings)
        with (out / "summary.txt").open("wb") as stdout:
            process = await asyncio.create_subprocess_exec(*argv, stdout=stdout, stderr=asyncio.subprocess.PIPE,
                                                           start_new_session=True)
        with contextlib.suppress(OSError):  # requests before backtests for the CPU
            os.setpriority(os.PRIO_PROCESS, process.pid, self.settings.engine_nice)
        try:
            lines = await asyncio.wait_for(self._follow(run.id, process), self.settings.backtest_timeout_seconds)
        except TimeoutError:
            return BacktestStatus.FAILED, None, (f"stopped after {self.settings.backtest_timeout_seconds} s "
                                                 "(BACKTEST_TIMEOUT_SECONDS): choose a shorter span or fewer pairs")
        finally:
            await _ended(process)
        report = out / "report.json"
        if process.returncode == 0 and report.exists():
            return BacktestStatus.DONE, summary_of(await asyncio.to_thread(read_report, report)), None
        return BacktestStatus.FAILED, None, _error_text(lines, process.returncode)

    async def _follow(self, run_id: int, process: asyncio.subprocess.Process) -> list[str]:
        """Reads the run's stderr to its end: progress goes to the row (a row gone stops the run), the other lines
        are kept for the error."""
        assert process.stderr is not None
        kept: deque[str] = deque(maxlen=ERROR_LINES)
        pending, noted = "", 0.0
        while chunk := await process.stderr.read(4096):
            *lines, pending = re.split(r"[\r\n]", pending + chunk.decode(errors="replace"))
            for line in (text.strip() for text in lines):
                if not line:
                    continue
                if found := PROGRESS.search(line):
                    done, total = int(found[1]), int(found[2])
                    progress = round(min(done / total, 0.99), 3) if total else 0.0
                    if progress >= noted + 0.01 and not await self._note(run_id, progress):
                        raise RunDeleted
                    noted = max(noted, progress)
                else:
                    kept.append(line)
        await process.wait()
        return list(kept)

    async def _note(self, run_id: int, progress: float) -> bool:
        async with self.uow() as uow:
            present = await uow.backtests.set_progress(run_id, progress)
            await uow.commit()
        return present


async def _ended(process: asyncio.subprocess.Process) -> None:
    """The run's process group is gone (stopped if it still runs: a timeout, a deletion, the service stopping)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def _error_text(lines: list[str], returncode: int | None) -> str:
    """The run's own words: its `trdbot backtest: ...` lines when it printed any, else its last lines."""
    own = [line.removeprefix("trdbot backtest: ") for line in lines if line.startswith("trdbot backtest:")]
    text = "\n".join(own or lines)[-2000:]
    return text or f"the backtest ended with exit code {returncode} and said nothing"
