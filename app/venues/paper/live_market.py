"""The paper venue's market on a live venue's public data (freqtrade's dry-run): its rules, prices and 5m candles."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from app.domain.errors import ConfigurationError
from app.domain.values import Candle, Side, SymbolRules, Timeframe
from app.marketdata.candles import CandleStore
from app.marketdata.series import CandleSeries, MemorySeries
from app.venues.paper.market import FIVE_MIN_MS, MarketNeeds, commission, slipped_price

RETAIN_MS = 24 * 60 * 60 * 1000  # a symbol's candles kept behind the newest; an older need fetches them again


class MarketSource(Protocol):
    """The public reads of a live venue a paper market needs (the Binance client answers them without a key)."""

    async def get_symbol_rules(self, symbol: str) -> SymbolRules: ...

    async def get_symbol_price(self, symbol: str) -> Decimal: ...

    async def get_klines(self, symbol: str, timeframe: Timeframe, limit: int) -> Sequence[Candle]: ...

    async def get_klines_between(self, symbol: str, timeframe: Timeframe, start_ms: int,
                                 end_ms: int) -> Sequence[Candle]: ...


class LiveMarket:
    """`PaperMarket` on a live source: market orders fill at the source's last price (its ticker) moved by the
    slippage, resting OCO legs are matched on the source's closed 5m candles from their placement on (the replay's
    matcher), and the rules are the source's exchangeInfo, so any pair it lists trades. `prepare` fetches what a
    call on an account reads; the synchronous reads answer from that."""

    def __init__(self, source: MarketSource, slippage_pct: Decimal = Decimal("0"), fee_rate: Decimal = Decimal("0.001"),
                 retain_ms: int = RETAIN_MS) -> None:
        self._source = source
        self.slippage_pct = Decimal(slippage_pct)
        self.fee_rate = Decimal(fee_rate)
        self._rules: dict[str, SymbolRules] = {}
        self._prices: dict[str, Decimal] = {}
        self._recent = RecentCandles(source, retain_ms)

    @property
    def candles(self) -> CandleStore:
        return self._recent.store

    async def prepare(self, needs: MarketNeeds, now_ms: int) -> None:
        """Rules first (a symbol the venue does not list fails here), then the price, then the candles."""
        symbols = {*needs.candles_from_ms, *((needs.symbol,) if needs.symbol is not None else ())}
        for symbol in sorted(symbols):
            self._rules[symbol] = await self._source.get_symbol_rules(symbol)
        if needs.price and needs.symbol is not None:
            self._prices[needs.symbol] = await self._source.get_symbol_price(needs.symbol)
        horizon_ms = now_ms // FIVE_MIN_MS * FIVE_MIN_MS
        for symbol, from_ms in sorted(needs.candles_from_ms.items()):
            await self._recent.cover(symbol, from_ms, horizon_ms)

    def rules(self, symbol: str) -> SymbolRules:
        found = self._rules.get(symbol)
        if found is None:
            raise ConfigurationError(f"{symbol}: the live market was not asked to read its rules before the call")
        return found

    def last_price(self, symbol: str, now_ms: int) -> Decimal:
        found = self._prices.get(symbol)
        if found is None:
            raise ConfigurationError(f"{symbol}: the live market was not asked to read its price before the call")
        return found

    def market_price(self, symbol: str, side: Side, now_ms: int) -> Decimal:
        return slipped_price(self.rules(symbol), self.last_price(symbol, now_ms), side, self.slippage_pct)

    def fee(self, amount: Decimal) -> Decimal:
        return commission(amount, self.fee_rate)

    def candles_known_until(self, symbol: str, from_ms: int, horizon_ms: int) -> int:
        return self._recent.known_until(symbol, from_ms, horizon_ms)

    async def klines(self, symbol: str, timeframe: Timeframe, until: datetime, limit: int) -> Sequence[Candle]:
        """The source's own latest closed candles (its time is the market's)."""
        return await self._source.get_klines(symbol, timeframe, limit)


class RecentCandles:
    """Each symbol's closed 5m candles from a live source over one unbroken span, extended as the matcher needs.

    A candle the source has not published yet (it closed a moment ago) ends the span: the matcher waits for it
    instead of walking past it, and the next call asks again.
    """

    def __init__(self, source: MarketSource, retain_ms: int = RETAIN_MS) -> None:
        self._source = source
        self._retain_ms = retain_ms
        self._candles: dict[str, list[Candle]] = {}
        self._spans: dict[str, tuple[int, int]] = {}  # symbol -> [first open time, open time known until)
        self._series: dict[tuple[str, Timeframe], CandleSeries] = {}
        self.store = CandleStore({})
        self._lock = asyncio.Lock()  # accounts prepare concurrently: one extends a span at a time

    def known_until(self, symbol: str, from_ms: int, horizon_ms: int) -> int:
        span = self._spans.get(symbol)
        if span is None or from_ms < span[0]:
            return from_ms  # the candles from there are not held: nothing can be matched yet
        return min(horizon_ms, span[1])

    async def cover(self, symbol: str, from_ms: int, horizon_ms: int) -> None:
        """Hold every closed candle the source has from `from_ms` up to `horizon_ms` (an open time)."""
        async with self._lock:
            span = self._spans.get(symbol)
            if span is not None and span[0] <= from_ms <= span[1] + self._retain_ms:
                if span[1] >= horizon_ms:
                    return
                held, start_ms, fetch_ms = self._candles[symbol], span[0], span[1]
            else:  # none held, or not from that far back, or a long way behind: a new span
                held, start_ms, fetch_ms = [], from_ms, from_ms
            fresh = await self._source.get_klines_between(symbol, Timeframe.M5, fetch_ms, horizon_ms)
            candles = held + [c for c in fresh if fetch_ms <= c.open_time_ms < horizon_ms]
            known_ms = candles[-1].open_time_ms + FIVE_MIN_MS if candles else fetch_ms
            self._keep(symbol, candles, max(start_ms, min(from_ms, horizon_ms - self._retain_ms)), known_ms)

    def _keep(self, symbol: str, candles: list[Candle], start_ms: int, known_ms: int) -> None:
        kept = [c for c in candles if c.open_time_ms >= start_ms]
        self._candles[symbol] = kept
        self._spans[symbol] = (start_ms, max(start_ms, known_ms))
        self._series[(symbol, Timeframe.M5)] = MemorySeries(kept)
        self.store = CandleStore(dict(self._series))
