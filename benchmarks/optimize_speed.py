"""Optimisation speed: trials per minute of a study over BTCUSDT 2024, and one backtest's CPU time beside freqtrade's.

    PYTHONPATH=. python benchmarks/optimize_speed.py [--data ../shared/data] [--trials 200] [--span 2024-01-01/2025-01-01]
                                                     [--jobs N] [--rounds 3] [--only study|cpu] [--cache DIR]

1. The study: `--trials` trials of the default space (TPE seeded, the median pruner, objective Sharpe, --min-trades
   10) in `--jobs` processes (default one per core) on a journal file, as `trdbot optimize` runs them, with an empty
   analysis cache (or `--cache DIR` to reuse one). Prints trials per minute (wall), the trials' states, the feature
   and analysis sets computed, and the peak PSS of all processes together and the largest process's peak RSS.
2. CPU seconds of one backtest of the span, alternated round by round in the same minutes (this machine's speed
   drifts by 10-30 % from one minute to the next): freqtrade 2026.9 (../shared/bench/freqtrade/run.sh: the freqtrade
   process's user + system time from its `time -v`), `trdbot backtest --workers 0` (a fresh process: start-up,
   loading, analyses, engine, report files, edge test) and one optimisation trial with its analyses cached (what a
   trial costs inside a study: the engine and the report's figures). Medians and ratios to freqtrade's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from benchmarks.backtest_speed import MemorySampler

ROOT = Path(__file__).resolve().parents[1]
FREQTRADE = next((p for p in (ROOT.parent / "shared" / "bench" / "freqtrade", Path("/work/shared/bench/freqtrade"))
                  if p.is_dir()), ROOT.parent / "shared" / "bench" / "freqtrade")
SYMBOL = "BTCUSDT"


def _day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def run_study(data: Path, start: datetime, end: datetime, trials: int, jobs: int, cache: Path) -> None:
    import optuna

    from app.assembly import build_backtest_engine
    from app.backtest.command import BacktestOptions
    from app.backtest.data import load_candles
    from app.optimize.cache import AnalysisCache
    from app.optimize.space import read_space
    from app.optimize.study import Objective, StudyOptions
    from app.optimize.study import run_study as study_run
    from app.optimize.trial import TrialBase

    began = time.perf_counter()
    options = BacktestOptions(symbols=(SYMBOL,), start=start, end=end, data=data, balance=Decimal(10000),
                              analyzer="rules", seed=42, config=None, out=None, quiet=True)
    candles = load_candles(data, (SYMBOL,), start, end)
    base = TrialBase(options, {"symbols": [SYMBOL]}, candles, data, build_backtest_engine, AnalysisCache(cache))
    cached_before = len(list(cache.glob("*.pkl")))
    features_before = len(list(cache.glob("*.features")))
    with tempfile.TemporaryDirectory() as journal:
        study_options = StudyOptions(trials=trials, objective=Objective.SHARPE, min_trades=10, seed=42, jobs=jobs,
                                     storage=None, name="speed", journal_dir=Path(journal))
        sampler = MemorySampler()
        sampler.start()
        loaded = time.perf_counter()
        study = study_run(base, read_space(None).for_symbols((SYMBOL,)), start, end, study_options)
        done = time.perf_counter()
        pss_mb = sampler.stop()
        states = [t.state.name for t in study.get_trials(deepcopy=False)]
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        best = f"best sharpe {study.best_value:.3f}" if complete else "no complete trial"
    peak_mb = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    minutes = (done - loaded) / 60
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
    print(f"study: {len(states)} trials of BTCUSDT {start:%Y-%m-%d}..{end:%Y-%m-%d} in {done - loaded:.1f} s on "
          f"{jobs} process(es) ({counts}; {best}; loading {loaded - began:.1f} s more)")
    print(f"  {len(states) / minutes:.1f} trials per minute; symbol-months computed: "
          f"{len(list(cache.glob('*.features'))) - features_before} of features, "
          f"{len(list(cache.glob('*.pkl'))) - cached_before} of analyses (the rest read from the cache)")
    print(f"  peak PSS of all processes {pss_mb:.0f} MB; largest process's peak RSS {peak_mb:.0f} MB")


def trial_cpu(data: Path, start: datetime, end: datetime, cache: Path) -> None:
    """One trial's CPU seconds with its analyses cached (filled first, outside the timing); prints JSON."""
    from app.assembly import build_backtest_engine
    from app.backtest.command import BacktestOptions
    from app.backtest.data import load_candles
    from app.optimize.cache import AnalysisCache
    from app.optimize.trial import TrialBase, run_settings

    options = BacktestOptions(symbols=(SYMBOL,), start=start, end=end, data=data, balance=Decimal(10000),
                              analyzer="rules", seed=42, config=None, out=None, quiet=True)
    candles = load_candles(data, (SYMBOL,), start, end)
    base = TrialBase(options, {"symbols": [SYMBOL]}, candles, data, build_backtest_engine, AnalysisCache(cache))
    run_settings(base, {}, start, end)  # the cache filled (or read), the kernels loaded
    cpu = time.process_time()
    run = run_settings(base, {}, start, end)
    print(json.dumps({"cpu": time.process_time() - cpu, "trades": run.report["trades"]}))


def _child_cpu(command: list[str], **kwargs: object) -> tuple[float, float, str, str]:
    """(user + system CPU seconds of the command and every process it waited for, peak RSS MB, stdout, stderr)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"{command[0]} exited {done.returncode}: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, after.ru_maxrss / 1024, done.stdout, done.stderr


def freqtrade_cpu(start: datetime, end: datetime) -> float:
    """The freqtrade process's own user + system seconds (run.sh's `time -v`; the stub and set-up left out)."""
    _, _, _, err = _child_cpu([str(FREQTRADE / "run.sh"), SYMBOL, f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}"])
    run_dir = re.search(r"run dir (\S+?)\)", err)
    if run_dir is None:
        raise RuntimeError(f"run.sh did not name its run directory: {err[-1000:]}")
    text = (Path(run_dir.group(1)) / "time.txt").read_text()
    seconds = [float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)]
    return sum(seconds)


def compare_cpu(data: Path, start: datetime, end: datetime, rounds: int, cache: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    figures: dict[str, list[float]] = {"freqtrade": [], "backtest": [], "trial": []}
    with tempfile.TemporaryDirectory() as out:
        backtest = [sys.executable, "-m", "app.cli", "backtest", "--symbols", SYMBOL, "--start", f"{start:%Y-%m-%d}",
                    "--end", f"{end:%Y-%m-%d}", "--data", str(data), "--workers", "0", "--quiet", "--out", out]
        trial = [sys.executable, __file__, "--trial-cpu", "--data", str(data), "--span",
                 f"{start:%Y-%m-%d}/{end:%Y-%m-%d}", "--cache", str(cache)]
        for index in range(rounds):
            figures["freqtrade"].append(freqtrade_cpu(start, end))
            figures["backtest"].append(_child_cpu(backtest, env=env)[0])
            figures["trial"].append(json.loads(_child_cpu(trial, env=env)[2].splitlines()[-1])["cpu"])
            print(f"  round {index + 1}: freqtrade {figures['freqtrade'][-1]:.1f} s, trdbot backtest "
                  f"{figures['backtest'][-1]:.1f} s, a cached trial {figures['trial'][-1]:.1f} s CPU", flush=True)
    ft = statistics.median(figures["freqtrade"])
    for key, label in (("freqtrade", "freqtrade backtesting"), ("backtest", "trdbot backtest --workers 0"),
                       ("trial", "one trial, analyses cached")):
        median = statistics.median(figures[key])
        print(f"  {label:<30} median {median:6.2f} s CPU ({min(figures[key]):.2f}-{max(figures[key]):.2f}), "
              f"{median / ft:.2f}x freqtrade's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--span", default="2024-01-01/2025-01-01", help="START/END, UTC days")
    parser.add_argument("--jobs", type=int, help="trial processes (default: one per core)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds of the CPU comparison")
    parser.add_argument("--only", choices=("study", "cpu"))
    parser.add_argument("--cache", type=Path, help="analysis cache to reuse (default: a fresh temporary one)")
    parser.add_argument("--trial-cpu", action="store_true", help=argparse.SUPPRESS)  # one cached trial, for the parent
    args = parser.parse_args()
    data = args.data if args.data.is_dir() else Path("/work/shared/data")
    start, end = (_day(t) for t in args.span.split("/"))
    if args.trial_cpu:
        trial_cpu(data, start, end, args.cache)
        return
    from app.backtest.ahead import default_workers

    print(f"Python {sys.version.split()[0]} ({os.path.realpath(sys.executable)}), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    cache = args.cache or Path(tempfile.mkdtemp(prefix="optimize-speed-cache-"))
    try:
        if args.only in (None, "study"):
            run_study(data, start, end, args.trials, args.jobs or max(1, default_workers()), cache)
        if args.only in (None, "cpu"):
            if not (FREQTRADE / "run.sh").is_file():
                print(f"cpu: {FREQTRADE}/run.sh not found: no freqtrade comparison")
                return
            print(f"cpu: one backtest of {SYMBOL} {start:%Y-%m-%d}..{end:%Y-%m-%d}, {args.rounds} alternated rounds")
            compare_cpu(data, start, end, args.rounds, cache)
    finally:
        if args.cache is None:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
