"""The simulator's market data endpoints: ping, time, exchangeInfo, tickers, and klines with the open candle."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.devtools.api_errors import BinanceApiError
from app.devtools.market_lookup import MarketLookup
from app.devtools.request_params import RequestContext, int_param, limit_param, required
from app.devtools.ticker_24hr import CANDLES_PER_DAY, RollingDay, ticker_24hr_json
from app.domain.clock import utc_from_ms
from app.domain.errors import DataError
from app.domain.values import Candle, Side, Timeframe
from app.venues.binance.protocol import exchange_info_json, kline_json, server_time_json, ticker_price_json


@dataclass(frozen=True, slots=True)
class _KlineWindow:
    start_ms: int | None
    end_ms: int | None
    limit: int

    def contains(self, open_ms: int) -> bool:
        after_start = self.start_ms is None or open_ms >= self.start_ms
        return after_start and (self.end_ms is None or open_ms <= self.end_ms)


class MarketDataEndpoints:
    """Answers from the simulated market's candles at the simulated time; none of them needs an account."""

    def __init__(self, lookup: MarketLookup, weight_limit: int) -> None:
        self._lookup = lookup
        self._weight_limit = weight_limit

    async def ping(self, _: RequestContext) -> Any:
        return {}

    async def time(self, context: RequestContext) -> Any:
        return server_time_json(context.now_ms)

    async def exchange_info(self, context: RequestContext) -> Any:
        symbols = self._lookup.requested_symbols(context.params)
        return exchange_info_json([self._lookup.rules(s) for s in symbols], context.now_ms, self._weight_limit)

    async def ticker_price(self, context: RequestContext) -> Any:
        if "symbol" in context.params:
            symbol = self._lookup.symbol(context.params)
            return ticker_price_json(symbol, self._lookup.last_price(symbol, context.now_ms))
        return [ticker_price_json(s, self._lookup.last_price(s, context.now_ms))
                for s in self._lookup.requested_symbols(context.params)]

    async def ticker_24hr(self, context: RequestContext) -> Any:
        """One symbol's rolling day with `symbol`, else a list (the `symbols` asked for, or every symbol)."""
        if "symbol" in context.params:
            return self._ticker_24hr(self._lookup.symbol(context.params), context.now_ms)
        return [self._ticker_24hr(s, context.now_ms) for s in self._lookup.requested_symbols(context.params)]

    def _ticker_24hr(self, symbol: str, now_ms: int) -> dict[str, Any]:
        market = self._lookup.market
        closed = market.candles.closed_candles(symbol, Timeframe.M5, utc_from_ms(now_ms), CANDLES_PER_DAY + 1)
        day = RollingDay.of(closed, now_ms)
        if not day.candles:
            return ticker_24hr_json(symbol, day, Decimal(0), Decimal(0))
        # the simulated book: what a market sell or buy would fill at now
        bid, ask = market.market_price(symbol, Side.SELL, now_ms), market.market_price(symbol, Side.BUY, now_ms)
        return ticker_24hr_json(symbol, day, bid, ask)

    async def klines(self, context: RequestContext) -> Any:
        params = context.params
        symbol = self._lookup.symbol(params)
        try:
            timeframe = Timeframe(required(params, "interval"))
        except ValueError as e:
            raise BinanceApiError(-1120) from e
        limit = limit_param(params)
        window = _KlineWindow(int_param(params, "startTime", None), int_param(params, "endTime", None), limit)
        candles = self._kline_window(symbol, timeframe, window, context.now_ms)
        return [kline_json(c, timeframe.ms) for c in candles]

    def _kline_window(self, symbol: str, timeframe: Timeframe, window: _KlineWindow, now_ms: int) -> list[Candle]:
        """Closed candles in the window plus, as on Binance, the candle still open at `now` (built from the past)."""
        store = self._lookup.market.candles
        newest_closed_open_ms = now_ms - timeframe.ms
        stop_ms = min(newest_closed_open_ms, window.end_ms if window.end_ms is not None else newest_closed_open_ms)
        if window.start_ms is not None:
            candles = store.candles_between(symbol, timeframe, window.start_ms, stop_ms + 1)[: window.limit]
        else:
            candles = [c for c in store.closed_candles(symbol, timeframe, utc_from_ms(stop_ms + timeframe.ms),
                                                       window.limit)]
        live = self._open_candle(symbol, timeframe, now_ms)
        if live is not None and window.contains(live.open_time_ms) and (not candles or
                                                                        candles[-1].open_time_ms < live.open_time_ms):
            candles.append(live)
        return candles[-window.limit:] if window.start_ms is None else candles[: window.limit]

    def _open_candle(self, symbol: str, timeframe: Timeframe, now_ms: int) -> Candle | None:
        """The candle of the bucket `now` falls in, from the 5m candles that have closed in it: no future leaks."""
        open_ms = now_ms // timeframe.ms * timeframe.ms
        closed_5m_end = now_ms - Timeframe.M5.ms + 1
        parts = self._lookup.market.candles.candles_between(symbol, Timeframe.M5, open_ms, closed_5m_end)
        if parts:
            return Candle(open_ms, parts[0].open, max(c.high for c in parts), min(c.low for c in parts),
                          parts[-1].close, sum((c.volume for c in parts), Decimal(0)))
        try:
            last = self._lookup.market.candles.price_at(symbol, utc_from_ms(now_ms))
        except DataError:
            return None
        return Candle(open_ms, last, last, last, last, Decimal(0))
