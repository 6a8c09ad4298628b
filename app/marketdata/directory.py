"""The pairs a candle directory offers (paper trading on replayed candles, backtests, the simulator) and their
24 h volume ranking, computed from candles closed before the decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from app.domain.clock import ms_from_utc, utc_from_ms
from app.domain.symbols import tradable_problem
from app.domain.values import SymbolRules, Timeframe
from app.marketdata.candles import CandleStore

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class Coverage:
    """One timeframe of one symbol: first and last open times, rows, and the gaps (runs of missing candles)."""

    timeframe: Timeframe
    first: datetime
    last: datetime
    rows: int
    gaps: int
    missing: int


class CandleDirectory:
    """The `SymbolDirectory` port over stored candles: every symbol with candles and rules; the ranking of the
    hour that began at or before `now` sums close x volume of the 5m candles of the 24 hours before that hour (a
    candle's quote volume, which our files do not keep, approximated by its close), so a list never uses a candle
    that closed after the decision, and it changes once an hour as on the live venue."""

    def __init__(self, candles: CandleStore, rules: Mapping[str, SymbolRules]) -> None:
        self.candles = candles
        self._rules = {s: r for s, r in rules.items() if candles.has_symbol(s)}
        self._rankings: dict[int, tuple[str, ...]] = {}
        self._coverage: dict[str, list[Coverage]] = {}

    async def listed(self) -> Mapping[str, SymbolRules]:
        return self._rules

    async def ranked(self, now: datetime) -> tuple[str, ...]:
        return self.ranking_at(now)

    def ranking_at(self, now: datetime) -> tuple[str, ...]:
        hour_ms = ms_from_utc(now) // HOUR_MS * HOUR_MS
        found = self._rankings.get(hour_ms)
        if found is None:
            volumes = {symbol: self.quote_volume(symbol, hour_ms - DAY_MS, hour_ms)
                       for symbol, rules in self._rules.items() if tradable_problem(rules) is None}
            found = tuple(s for s, v in sorted(volumes.items(), key=lambda kv: (-kv[1], kv[0])) if v > 0)
            self._rankings[hour_ms] = found
        return found

    def quote_volume(self, symbol: str, start_ms: int, end_ms: int) -> float:
        """Sum of close x volume of the 5m candles opened in [start_ms, end_ms - 5 min], all closed by end_ms."""
        arrays = self.candles.arrays_between(symbol, Timeframe.M5, start_ms, end_ms - Timeframe.M5.ms + 1)
        return float((arrays.close * arrays.volume).sum()) if len(arrays) else 0.0

    def coverage(self, symbol: str) -> list[Coverage]:
        """Each timeframe's span and gaps (the candles are read-only, so it is worked out once)."""
        found = self._coverage.get(symbol)
        if found is None:
            found = self._coverage[symbol] = self._measure(symbol)
        return found

    def _measure(self, symbol: str) -> list[Coverage]:
        answer = []
        for timeframe in self.candles.timeframes(symbol):
            times = self.candles.arrays_between(symbol, timeframe, 0, 2**62).open_time_ms
            if len(times) == 0:
                continue
            gaps = self.candles.gaps(symbol, timeframe)
            answer.append(Coverage(timeframe, utc_from_ms(int(times[0])), utc_from_ms(int(times[-1])), len(times),
                                   len(gaps), sum(g.missing for g in gaps)))
        return answer
