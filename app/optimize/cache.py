"""Analyses cached on disk: a symbol's analyses depend only on its candles and the analysis settings, so trials
that share those settings reuse them and pay only for the engine (exits, risk, orders, books). They are stored per
calendar month of cycles: a span's analyses are its months' (the first and last ones cut at its ends), so the
overlapping train and test windows of a walk-forward share the months they have in common.

For the rule analyst the work is kept in two layers. The market's features (indicators, regime, S/R levels,
confluence: most of the cost) depend on the candles and the S/R touch threshold only; they are kept per month as
the part the rules read (`RuleBasedAnalyzer.view`) and, for the cycles some settings could make a buy, the whole
features an entry is sized from. A trial whose rule thresholds are new asks its rules again over those views (about
half the cost of a whole analysis) instead of rebuilding the features. A buy found where no whole features were kept (not expected:
`could_buy` says where they are needed) is computed the live way, so the answers never depend on that guess."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from app.analysts.rules import RuleBasedAnalyzer
from app.backtest.ahead import Packed, PackedColumn, features_bytes, pack, unpack
from app.backtest.runner import BacktestEngine, cycle_times
from app.backtest.strategy import StrategyOverrides
from app.config import Settings
from app.domain.analysts import AnalystKind
from app.domain.clock import ms_from_utc
from app.domain.profiles import asset_profile
from app.domain.risk import TradingConfig
from app.domain.values import MarketFeatures
from app.engine.analysis import SymbolAnalysis, analyze_with

CACHE_VERSION = 3  # bump when what an analysis holds or how it is computed changes (2: per month; 3: two layers)
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


def market_key(symbol: str, times: list[datetime], settings: Settings, data: str) -> str:
    """Everything a symbol's features depend on: the data, the cycles and the settings the features read."""
    profile = asset_profile(symbol)  # the regime reads the fitted volatility thresholds
    return _hashed({
        "version": CACHE_VERSION, "symbol": symbol, "data": data,
        "cycles": [ms_from_utc(times[0]), ms_from_utc(times[-1]), len(times)],
        "sr_touch_threshold_pct": str(settings.sr_touch_threshold_pct),
        "volatility": [profile.volatile_atr_pct, profile.volatile_bb_width_pct],
    })


def analysis_key(symbol: str, times: list[datetime], settings: Settings, strategy: StrategyOverrides,
                 analyzer: str, data: str) -> str:
    """Everything a symbol's analyses depend on: its features' key, the analyst and the rule analyst's settings."""
    return _hashed({"market": market_key(symbol, times, settings, data), "analyzer": analyzer,
                    "rules": {k: str(v) for k, v in dataclasses.asdict(strategy.rules).items()}})


def _hashed(material: Mapping[str, object]) -> str:
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


@dataclass(slots=True)
class MarketColumn:
    """One symbol's features over a month of cycles: what the rules read of each (None: no market data then), and
    the whole features, pickled by `features_bytes`, of the cycles `could_buy` (by offset)."""

    views: list[MarketFeatures | None]
    whole: dict[int, bytes]


class AnalysisCache:
    """Files in `directory`, one per symbol, month and analysis settings (KEY.pkl) and one per symbol, month and
    feature settings (KEY.features); each written whole (a temporary file renamed)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.hits = 0  # analysis sets read, and computed: this process's (forked trial processes keep theirs)
        self.misses = 0
        self.market_misses = 0  # feature sets computed (the costly part of a miss)
        self.stored_at_start = self.stored()

    def stored(self) -> int:
        """Analysis sets on disk (every process's)."""
        return len(list(self.directory.glob("*.pkl"))) if self.directory.is_dir() else 0

    def analyses(self, build: Callable[[], BacktestEngine], data_dir: Path, settings: Settings,
                 strategy: StrategyOverrides, config: TradingConfig, symbols: tuple[str, ...], start: datetime,
                 end: datetime) -> CachedAnalyses:
        """Every symbol's analyses over the cycles of [start, end]: read, or computed (each month by a fresh engine
        from `build`, the backtest's own analysis path) and stored."""
        times = cycle_times(start, end, 300)
        columns = {}
        for symbol in symbols:
            data = data_identity(data_dir, symbol)
            parts = []
            for month in months(times):
                key = analysis_key(symbol, month, settings, strategy, config.analyzer, data)
                column = self._read(key, PackedColumn)
                if column is None:
                    column = self._computed(build, symbol, config.analyzer, month,
                                            market_key(symbol, month, settings, data))
                    self._write(key, column)
                parts.append(column)
            columns[symbol] = PackedColumn.joined(parts)
        return CachedAnalyses(config.analyzer, times, columns)

    def _computed(self, build: Callable[[], BacktestEngine], symbol: str, analyzer: str, times: list[datetime],
                  market: str) -> PackedColumn:
        """The month's answers: the rules over the month's kept features (computed and kept first if new), or for
        another analyst the live path's analyses."""
        self.misses += 1
        engine = build()
        provider = engine.bot.analysts.get(analyzer) or engine.bot.analysts[AnalystKind.RULES]  # as the engine asks
        if not isinstance(provider, RuleBasedAnalyzer):
            return PackedColumn.of(asyncio.run(_analyse(engine, symbol, analyzer, times)))
        features = self._read(market, MarketColumn)
        if features is None:
            self.market_misses += 1
            features = asyncio.run(_market(engine, symbol, times))
            self._write(market, features)
        return PackedColumn.of(asyncio.run(_answers(build, provider, symbol, analyzer, times, features)))

    def _read(self, key: str, kind: type[_Kept]) -> _Kept | None:
        try:
            kept = pickle.loads(self._path(key, kind).read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
            return None  # absent, or written by another version: computed again
        if not isinstance(kept, kind):
            return None
        if kind is PackedColumn:
            self.hits += 1
        return kept

    def _write(self, key: str, kept: PackedColumn | MarketColumn) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            pickle.dump(kept, file, pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, self._path(key, type(kept)))

    def _path(self, key: str, kind: type) -> Path:
        """An analysis set is KEY.pkl, a feature set KEY.features."""
        return self.directory / f"{key}.{'pkl' if kind is PackedColumn else 'features'}"


_Kept = TypeVar("_Kept", PackedColumn, MarketColumn)


async def _analyse(engine: BacktestEngine, symbol: str, analyzer: str, times: list[datetime]) -> list[Packed]:
    """What a worker of app.backtest.ahead computes, for one symbol over every cycle."""
    engine.features.plan_until(times[-1])
    answers = []
    for now in times:
        engine.clock.set(now)
        answers.append(pack(await engine.bot.analyse_symbol(symbol, analyzer, now)))
    return answers


async def _market(engine: BacktestEngine, symbol: str, times: list[datetime]) -> MarketColumn:
    """The features of every cycle, by the live path's own feature building, as the rules' views (and whole where
    some settings could buy)."""
    engine.features.plan_until(times[-1])
    views: list[MarketFeatures | None] = []
    whole = {}
    for offset, now in enumerate(times):
        engine.clock.set(now)
        features = await engine.bot.analysis.features_or_none(symbol, now)
        views.append(None if features is None else RuleBasedAnalyzer.view(features))
        if features is not None and RuleBasedAnalyzer.could_buy(features):
            whole[offset] = features_bytes(features)
    return MarketColumn(views, whole)


async def _answers(build: Callable[[], BacktestEngine], provider: RuleBasedAnalyzer, symbol: str, analyzer: str,
                   times: list[datetime], market: MarketColumn) -> list[Packed]:
    """The rules' answer at every cycle from its view (as `MarketAnalysis.analyse_symbol` asks them), packed with
    the whole features it needs; one that needs features not kept is analysed the live way (by a fresh engine)."""
    answers: list[Packed] = []
    for offset, (now, view) in enumerate(zip(times, market.views, strict=True)):
        if view is None:
            answers.append(None)
            continue
        report = await analyze_with(provider, view)
        # features left out (not SymbolAnalysis.of): pack must carry the kept whole features, never the view
        analysis = SymbolAnalysis(symbol, now, view.last_price, view.regime.regime, view.confluence, report, None)
        packed = pack(analysis, market.whole.get(offset))
        if packed is not None and len(packed) != 5 and packed[-1] is None:  # an answer without its features
            packed = (await _analyse(build(), symbol, analyzer, [now]))[0]
        answers.append(packed)
    return answers
