"""The Optuna study of one span: TPE (seeded), a median pruner on the monthly P&L, trials in parallel processes
that share one storage (a journal file, or `--storage URL` so workers on other machines join).

On an RDB storage (`--storage postgresql://...`) every running trial beats a heartbeat; a trial whose worker died
(killed, machine lost) stops beating, and the next worker to start a trial marks it FAIL and queues a retry with the
same parameters (RetryFailedTrialCallback). The target counts judged trials (COMPLETE and PRUNED): a failed trial is
made up for, so a study whose worker was killed finishes when any worker runs the same command again."""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import socket
import time
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import optuna

from app.optimize.space import SearchSpace, config_of
from app.optimize.trial import TrialBase, run_settings

METRICS = ("total_return_pct", "annualised_return_pct", "max_drawdown_pct", "sharpe", "sortino", "calmar", "trades",
           "win_rate_pct", "profit_factor", "expectancy")
JUDGED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)  # what the target counts
RETRIES = 2  # a trial whose worker died runs again at most this often


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Objective(StrEnum):
    SHARPE = "sharpe"
    SORTINO = "sortino"
    CALMAR = "calmar"
    PROFIT_FACTOR = "profit_factor"
    EXPECTANCY = "expectancy"
    NET_RETURN = "net_return"


@dataclass(frozen=True, slots=True)
class StudyOptions:
    trials: int
    objective: Objective
    min_trades: int
    seed: int
    jobs: int
    storage: str | None  # an Optuna storage URL; None: in memory (one job) or a journal file (several)
    name: str
    journal_dir: Path | None = None  # where several jobs keep their journal when no storage is named
    heartbeat: int = 30  # seconds between a running trial's heartbeats on an RDB storage (stale after twice that)


def objective_value(report: Mapping[str, Any], objective: Objective) -> float | None:
    """The figure the study maximises, from a backtest report (None when undefined, e.g. no losing trade)."""
    if objective is Objective.NET_RETURN:
        return float(report["total_return_pct"])
    value = report[objective.value]
    if value is None:
        return None
    return float(Decimal(value)) if isinstance(value, str) else float(value)


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, float]:
    values: dict[str, float] = {}
    for p in space.params:
        if p.is_int:
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return values


def trial_objective(base: TrialBase, space: SearchSpace, start: datetime, end: datetime,
                    options: StudyOptions) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, space)
        trial.set_user_attr("worker", _worker_name())  # which machine and process ran it

        def on_month(step: int, realised_pct: float) -> None:
            trial.report(realised_pct, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after month {step}: realised {realised_pct:.3f} %")

        try:
            run = run_settings(base, config_of(values), start, end, on_month)
        except ValueError as e:  # settings that contradict each other (e.g. a stop range turned inside out)
            trial.set_user_attr("infeasible", str(e))
            raise optuna.TrialPruned(f"infeasible: {e}") from e
        trial.set_user_attr("metrics", {k: run.report[k] for k in METRICS})
        trial.set_user_attr("daily_returns", [round(r, 10) for r in run.daily_returns])
        if run.report["trades"] < options.min_trades:
            trial.set_user_attr("too_few_trades", run.report["trades"])
            raise optuna.TrialPruned(f"{run.report['trades']} trades, fewer than --min-trades {options.min_trades}")
        value = objective_value(run.report, options.objective)
        if value is None or not math.isfinite(value):
            raise optuna.TrialPruned(f"{options.objective} undefined")
        return value

    return objective


def _sampler(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


def _pruner() -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def storage_url(url: str) -> str:
    """An RDB URL with a synchronous driver (Optuna is synchronous): the service's `postgresql+asyncpg://` and a
    plain `postgresql://` become `postgresql+psycopg://`, `sqlite+aiosqlite://` becomes `sqlite://`."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return f"postgresql+psycopg{sep}{rest}"
    if scheme == "sqlite+aiosqlite":
        return f"sqlite{sep}{rest}"
    return url


def _storage(options: StudyOptions) -> Any:
    """A fresh storage object (each process makes its own: connections are not shared across a fork)."""
    if options.storage:
        return _rdb_storage(storage_url(options.storage), options.heartbeat)
    if options.jobs <= 1:
        return None
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    directory = options.journal_dir or Path("var")
    directory.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(directory / f"{options.name}.journal")))


def _rdb_storage(url: str, heartbeat: int, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage, its tables created by the first worker. Workers started together race to create them
    (PostgreSQL answers the loser's CREATE TYPE with a unique violation): the loser tries again, and finds them."""
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # the heartbeat and its callback are "experimental" (since Optuna 2.8)
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=RETRIES))
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random())  # spread the retries
    raise AssertionError("unreachable")


def _sampler_seed(options: StudyOptions, index: int) -> int:
    """The seed of a process's sampler: `seed` (+ the job's index) on this machine's own storage, so one job
    reproduces a study; on a shared --storage the host and process are mixed in too, so workers started with the
    same command do not draw the same first trials."""
    if not options.storage:
        return options.seed + index
    return (options.seed + index + zlib.crc32(_worker_name().encode())) % 2**31


def _remaining(study: optuna.Study, options: StudyOptions) -> int:
    return options.trials - _finished(study)


def run_study(base: TrialBase, space: SearchSpace, start: datetime, end: datetime, options: StudyOptions,
              progress: Callable[[int], None] | None = None) -> optuna.Study:
    """`options.trials` judged trials of [start, end] (a study already holding some runs only the rest)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(options)
    study = optuna.create_study(study_name=options.name, storage=storage, direction="maximize",
                                sampler=_sampler(_sampler_seed(options, 0)), pruner=_pruner(), load_if_exists=True)
    objective = trial_objective(base, space, start, end, options)
    if progress:
        progress(_finished(study))
    if options.jobs <= 1:
        _optimize(study, objective, options, (lambda _s, _t: progress(1)) if progress else None)
    else:
        _run_in_processes(study, objective, options, progress)
    return study


def _optimize(study: optuna.Study, objective: Callable[[optuna.Trial], float], options: StudyOptions,
              tick: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None) -> None:
    """Trials until the study holds `options.trials` judged ones (other workers' included)."""
    remaining = _remaining(study, options)
    if remaining <= 0:
        return
    stop = optuna.study.MaxTrialsCallback(options.trials, states=JUDGED)
    study.optimize(objective, n_trials=remaining + RETRIES, callbacks=[stop, *([tick] if tick else [])])


_forked: tuple[Callable[[optuna.Trial], float], StudyOptions] | None = None  # what each forked worker runs


def _worker(index: int) -> None:
    assert _forked is not None
    objective, options = _forked
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=options.name, storage=_storage(options),
                              sampler=_sampler(_sampler_seed(options, index)), pruner=_pruner())
    _optimize(study, objective, options)


def _run_in_processes(study: optuna.Study, objective: Callable[[optuna.Trial], float],
                      options: StudyOptions, progress: Callable[[int], None] | None) -> None:
    """`jobs` forked processes (the backtest is CPU-bound: threads would share one core) on the shared storage."""
    global _forked
    _forked = (objective, options)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_worker, args=(i,), daemon=True) for i in range(options.jobs)]
    for worker in workers:
        worker.start()
    shown = _finished(study)
    while any(w.is_alive() for w in workers):
        time.sleep(0.5)
        done = _finished(study)
        if progress and done > shown:
            progress(done - shown)
        shown = done
    failed = [w.exitcode for w in workers if w.exitcode]
    if failed:
        raise RuntimeError(f"{len(failed)} optimisation worker process(es) failed (exit codes {failed})")


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=JUDGED))
