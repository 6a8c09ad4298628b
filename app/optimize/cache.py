"""Analyses cached on disk: a symbol's analyses depend only on its candles and the analysis settings, so trials
that share those settings reuse them and pay only for the engine (exits, risk, orders, books). They are stored per
calendar month of cycles: a span's analyses are its months' (the first and last ones cut at its ends), so the
overlapping train and test windows of a walk-forward share the months they have in common."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from app.backtest.ahead import Packed, PackedColumn, pack, unpack
from app.backtest.runner import BacktestEngine, cycle_times
from app.backtest.strategy import StrategyOverrides
from app.config import Settings
from app.domain.clock import ms_from_utc
from app.domain.profiles import asset_profile
from app.domain.risk import TradingConfig
from app.engine.analysis import SymbolAnalysis

CACHE_VERSION = 2  # bump when what an analysis holds or how it is computed changes (2: per month)
_content_hashes: dict[tuple[str, int, int], str] = {}


def data_identity(directory: Path, symbol: str) -> str:
    """The content of every file the symbol's analyses read (its candle files and the exchange rules), hashed;
    a file's hash is kept per process while its size and modification time stay the same."""
    files = [*sorted(directory.glob(f"*_{symbol}_*")), directory / "exchange_info.json"]
    digest = hashlib.sha256()
    for path in files:
        if path.is_file():
            digest.update(f"{path.name}:{_content_hash(path)};".encode())
    return digest.hexdigest()


def _content_hash(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _content_hashes:
        _content_hashes[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _content_hashes[key]


def analysis_key(symbol: str, times: list[datetime], settings: Settings, strategy: StrategyOverrides,
                 analyzer: str, data: str) -> str:
    """Everything a symbol's analyses depend on: the data, the cycles, the analyst and the analysis settings."""
    profile = asset_profile(symbol)  # the regime reads the fitted volatility thresholds
    material = {
        "version": CACHE_VERSION, "symbol": symbol, "analyzer": analyzer, "data": data,
        "cycles": [ms_from_utc(times[0]), ms_from_utc(times[-1]), len(times)],
        "sr_touch_threshold_pct": str(settings.sr_touch_threshold_pct),
        "rules": {k: str(v) for k, v in dataclasses.asdict(strategy.rules).items()},
        "volatility": [profile.volatile_atr_pct, profile.volatile_bb_width_pct],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def months(times: list[datetime]) -> list[list[datetime]]:
    """The cycles cut by calendar month (UTC), in order."""
    out: list[list[datetime]] = []
    for when in times:
        if not out or (when.year, when.month) != (out[-1][0].year, out[-1][0].month):
            out.append([])
        out[-1].append(when)
    return out


class CachedAnalyses:
    """The engine's AnalysesAhead over columns read from the cache."""

    def __init__(self, analyzer: str, times: list[datetime], columns: Mapping[str, PackedColumn]) -> None:
        self._analyzer, self._columns = analyzer, columns
        self._first_ms = ms_from_utc(times[0])
        self._step_ms = ms_from_utc(times[1]) - self._first_ms if len(times) > 1 else 1

    def covers(self, symbol: str, analyzer: str) -> bool:
        return analyzer == self._analyzer and symbol in self._columns

    def take(self, symbol: str, now: datetime) -> SymbolAnalysis | None:
        return unpack(self._columns[symbol][(ms_from_utc(now) - self._first_ms) // self._step_ms], symbol, now)


class AnalysisCache:
    """One file per symbol, span and analysis settings in `directory`; written whole (a temporary file renamed)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.hits = 0  # this process's (trial processes are forked: theirs stay with them)
        self.misses = 0
        self.stored_at_start = self.stored()

    def stored(self) -> int:
        """Analysis sets on disk (every process's)."""
        return len(list(self.directory.glob("*.pkl"))) if self.directory.is_dir() else 0

    def analyses(self, build: Callable[[], BacktestEngine], data_dir: Path, settings: Settings,
                 strategy: StrategyOverrides, config: TradingConfig, symbols: tuple[str, ...], start: datetime,
                 end: datetime) -> CachedAnalyses:
        """Every symbol's analyses over the cycles of [start, end]: read, or computed by a fresh engine from
        `build` (the backtest's own analysis path) and stored."""
        times = cycle_times(start, end, 300)
        columns = {}
        for symbol in symbols:
            data = data_identity(data_dir, symbol)
            parts = []
            for month in months(times):
                key = analysis_key(symbol, month, settings, strategy, config.analyzer, data)
                parts.append(self._read(key) or self._computed(key, build(), symbol, config.analyzer, month))
            columns[symbol] = PackedColumn.joined(parts)
        return CachedAnalyses(config.analyzer, times, columns)

    def _read(self, key: str) -> PackedColumn | None:
        path = self.directory / f"{key}.pkl"
        try:
            column = pickle.loads(path.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError):
            return None
        self.hits += 1
        return column if isinstance(column, PackedColumn) else None

    def _computed(self, key: str, engine: BacktestEngine, symbol: str, analyzer: str,
                  times: list[datetime]) -> PackedColumn:
        self.misses += 1
        column = PackedColumn.of(asyncio.run(_analyse(engine, symbol, analyzer, times)))
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            pickle.dump(column, file, pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, self.directory / f"{key}.pkl")
        return column


async def _analyse(engine: BacktestEngine, symbol: str, analyzer: str, times: list[datetime]) -> list[Packed]:
    """What a worker of app.backtest.ahead computes, for one symbol over every cycle."""
    engine.features.plan_until(times[-1])
    answers = []
    for now in times:
        engine.clock.set(now)
        answers.append(pack(await engine.bot.analyse_symbol(symbol, analyzer, now)))
    return answers
