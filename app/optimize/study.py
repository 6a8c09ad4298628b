"""The Optuna study of one span: TPE (seeded), a median pruner on the monthly P&L, trials in parallel processes
that share one storage (a journal file, or `--storage URL` so workers on other machines join)."""

from __future__ import annotations

import math
import multiprocessing
import time
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
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


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


def _storage(options: StudyOptions) -> Any:
    if options.storage:
        return options.storage
    if options.jobs <= 1:
        return None
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    directory = options.journal_dir or Path("var")
    directory.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(directory / f"{options.name}.journal")))


def run_study(base: TrialBase, space: SearchSpace, start: datetime, end: datetime, options: StudyOptions,
              progress: Callable[[int], None] | None = None) -> optuna.Study:
    """`options.trials` finished trials of [start, end] (a study already holding some runs only the rest)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(options)
    study = optuna.create_study(study_name=options.name, storage=storage, direction="maximize",
                                sampler=_sampler(options.seed), pruner=_pruner(), load_if_exists=True)
    objective = trial_objective(base, space, start, end, options)
    stop = optuna.study.MaxTrialsCallback(options.trials, states=FINISHED)
    if options.jobs <= 1:
        tick = (lambda _s, _t: progress(1)) if progress else None
        study.optimize(objective, n_trials=options.trials, callbacks=[stop, *([tick] if tick else [])])
        return study
    _run_in_processes(study, storage, objective, options, progress)
    return study


_forked: tuple[Callable[[optuna.Trial], float], Any, StudyOptions] | None = None  # what each forked worker runs


def _worker(index: int) -> None:
    assert _forked is not None
    objective, storage, options = _forked
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=options.name, storage=storage, sampler=_sampler(options.seed + index),
                              pruner=_pruner())
    study.optimize(objective, n_trials=options.trials,
                   callbacks=[optuna.study.MaxTrialsCallback(options.trials, states=FINISHED)])


def _run_in_processes(study: optuna.Study, storage: Any, objective: Callable[[optuna.Trial], float],
                      options: StudyOptions, progress: Callable[[int], None] | None) -> None:
    """`jobs` forked processes (the backtest is CPU-bound: threads would share one core) on the shared storage."""
    global _forked
    _forked = (objective, storage, options)
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
    return len(study.get_trials(deepcopy=False, states=FINISHED))
