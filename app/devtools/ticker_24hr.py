"""The simulator's `GET /api/v3/ticker/24hr`: Binance's rolling 24-hour statistics from the 5m candles closed by now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from app.domain.values import Candle, format_decimal
from app.venues.binance.protocol import dec

DAY_MS = 86_400_000
CANDLES_PER_DAY = 288  # 5m candles
_PRICE_QUANTUM = Decimal("0.00000001")  # Binance sends computed prices with 8 decimals
_PERCENT_QUANTUM = Decimal("0.001")  # and the change in percent with 3
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class RollingDay:
    """The candles of the 24 hours before `now_ms` (oldest first) and the close just before them, if any."""

    candles: Sequence[Candle]
    previous_close: Decimal | None
    now_ms: int

    @classmethod
    def of(cls, closed: Sequence[Candle], now_ms: int) -> RollingDay:
        """From the last closed 5m candles (a day's worth and one more, for the close before the window)."""
        first = next((i for i, c in enumerate(closed) if c.open_time_ms >= now_ms - DAY_MS), len(closed))
        previous = closed[first - 1].close if first > 0 else None
        return cls(closed[first:], previous, now_ms)


def ticker_24hr_json(symbol: str, day: RollingDay, bid: Decimal, ask: Decimal) -> dict[str, Any]:
    """Binance's FULL ticker. The candles carry no trades, quote volume or order book, so quoteVolume is the sum of
    close x volume over the candles (a close-price estimate of what traded), the trade ids and count say "no trades"
    as Binance does (-1, -1, 0), and the quantities at the bid, the ask and the last trade are 0."""
    candles = day.candles
    if not candles:
        return _quiet_ticker(symbol, day.now_ms)
    open_price, last = candles[0].open, candles[-1].close
    volume = sum((c.volume for c in candles), _ZERO)
    quote_volume = sum((c.close * c.volume for c in candles), _ZERO)
    change = last - open_price
    return {
        "symbol": symbol, "priceChange": dec(change),
        "priceChangePercent": format_decimal((change / open_price * 100).quantize(_PERCENT_QUANTUM, ROUND_HALF_EVEN),
                                             _PERCENT_QUANTUM),
        "weightedAvgPrice": dec(_weighted_average(quote_volume, volume, last)),
        "prevClosePrice": dec(day.previous_close if day.previous_close is not None else open_price),
        "lastPrice": dec(last), "lastQty": "0", "bidPrice": dec(bid), "bidQty": "0", "askPrice": dec(ask),
        "askQty": "0", "openPrice": dec(open_price), "highPrice": dec(max(c.high for c in candles)),
        "lowPrice": dec(min(c.low for c in candles)), "volume": dec(volume), "quoteVolume": dec(quote_volume),
        "openTime": day.now_ms - DAY_MS, "closeTime": day.now_ms, "firstId": -1, "lastId": -1, "count": 0,
    }


def _weighted_average(quote_volume: Decimal, volume: Decimal, last: Decimal) -> Decimal:
    if volume == 0:
        return last
    return (quote_volume / volume).quantize(_PRICE_QUANTUM, ROUND_HALF_EVEN)


def _quiet_ticker(symbol: str, now_ms: int) -> dict[str, Any]:
    """A symbol without a closed candle in the last day: Binance answers zeros."""
    zeros = ("priceChange", "priceChangePercent", "weightedAvgPrice", "prevClosePrice", "lastPrice", "lastQty",
             "bidPrice", "bidQty", "askPrice", "askQty", "openPrice", "highPrice", "lowPrice", "volume", "quoteVolume")
    return {"symbol": symbol, **dict.fromkeys(zeros, "0"), "openTime": now_ms - DAY_MS, "closeTime": now_ms,
            "firstId": -1, "lastId": -1, "count": 0}
