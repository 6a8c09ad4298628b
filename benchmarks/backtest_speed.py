"""Backtest speed: one symbol-year (BTCUSDT 2024) and four symbols over 2024-05..2025-05, rule-based analyst.

    PYTHONPATH=. python benchmarks/backtest_speed.py [--data ../shared/data] [--only one|four] [--days N] [--workers N]
                                                     [--repeat N]

Prints 5-minute cycles per second, wall time (loading included and excluded) and peak memory: the engine's and the
largest worker's peak RSS, and the peak PSS of all of them together (shared pages counted once). With --repeat N
each case runs N times, each in a fresh process, and the best and the median follow: this machine's speed drifts
by 10-20 % from one minute to the next, so one run says little about a change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from app.assembly import build_backtest_engine
from app.backtest.data import load_candles, plan_span
from app.backtest.runner import BacktestSpec, run_backtest
from app.config import Settings
from app.domain.clock import SimulatedClock
from app.domain.risk import TradingConfig

CASES = {
    "one": (("BTCUSDT",), datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
    "four": (("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"), datetime(2024, 5, 1, tzinfo=UTC),
             datetime(2025, 5, 1, tzinfo=UTC)),
}


class MemorySampler(threading.Thread):
    """Peak proportional set size (PSS, Linux) of this process plus its worker processes, sampled every second:
    pages the forked workers share with the engine count once, unlike a sum of each process's RSS. (Reading
    smaps_rollup costs the kernel ~5 ms per process; five times a second it took ~5 % of the machine.)"""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(1.0):
            self.peak_mb = max(self.peak_mb, sum(_pss_mb(pid) for pid in _family(os.getpid())))

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak_mb


def _family(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(p for child in children for p in _family(int(child)))]


def _pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_case(data: Path, symbols: tuple[str, ...], start: datetime, end: datetime,
             workers: int | None) -> dict[str, float]:
    began = time.perf_counter()
    candles = load_candles(data, symbols, start, end)
    span = plan_span(candles, symbols, start, end)
    engine = build_backtest_engine(Settings(_env_file=None, backtest_workers=workers), candles, SimulatedClock(span.start))
    spec = BacktestSpec(TradingConfig(1, is_active=True, symbols=symbols), span.start, span.end, Decimal("10000"))
    loaded = time.perf_counter()
    sampler = MemorySampler()
    sampler.start()
    result = asyncio.run(run_backtest(engine, spec))
    done = time.perf_counter()
    pss_mb = sampler.stop()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest worker process
    print(f"{','.join(symbols)} {span.start:%Y-%m-%d} .. {span.end:%Y-%m-%d}: {result.cycles} cycles x "
          f"{len(symbols)} symbols, {len(result.trades)} trades, final {result.final_balance:.2f} USDT")
    print(f"  run {done - loaded:.2f} s ({result.cycles / (done - loaded):,.0f} cycles/s, "
          f"{(done - loaded) / result.cycles / len(symbols) * 1e6:.0f} us per symbol-cycle); "
          f"with loading {done - began:.2f} s; peak RSS {peak_mb:.0f} MB (largest worker {worker_mb:.0f} MB); "
          + (f"peak PSS of all processes {pss_mb:.0f} MB" if pss_mb else "PSS not sampled (under a second)"))
    return {"run": done - loaded, "with_loading": done - began, "pss_mb": pss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--only", choices=tuple(CASES))
    parser.add_argument("--days", type=int, help="shorten each case to its first N days")
    parser.add_argument("--workers", type=int, help="processes analysing ahead (default: one per CPU core; 0: none)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case, each in a fresh process (default 1)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # a repeat's figures, for its parent
    args = parser.parse_args()
    data = args.data if args.data.is_dir() else Path("/work/shared/data")
    if not args.json:  # the interpreter's build matters (README: the venv's interpreter)
        print(f"Python {sys.version.split()[0]} ({os.path.realpath(sys.executable)})")
    for name, (symbols, start, end) in CASES.items():
        if args.only not in (None, name):
            continue
        if args.repeat > 1:
            repeat_case(name, args)
            continue
        figures = run_case(data, symbols, start, start + timedelta(days=args.days) if args.days else end, args.workers)
        if args.json:
            print(json.dumps(figures))


def repeat_case(name: str, args: argparse.Namespace) -> None:
    """The case run `args.repeat` times, each in a fresh process (nothing loaded or compiled carries over)."""
    command = [sys.executable, __file__, "--only", name, "--data", str(args.data), "--json"]
    for option in ("days", "workers"):
        if getattr(args, option) is not None:
            command += [f"--{option}", str(getattr(args, option))]
    runs = []
    for _ in range(args.repeat):
        lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
        print("\n".join(lines[:-1]), flush=True)
        runs.append(json.loads(lines[-1]))
    for key, label in (("run", "run"), ("with_loading", "with loading")):
        times = [r[key] for r in runs]
        print(f"  {label}: best {min(times):.2f} s, median {statistics.median(times):.2f} s, worst {max(times):.2f} s "
              f"of {len(times)}")
    print(f"  peak PSS of all processes: at most {max(r['pss_mb'] for r in runs):.0f} MB")


if __name__ == "__main__":
    main()
