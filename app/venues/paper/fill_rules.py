"""Where a resting sell fills inside one candle: the paper venue's rules, for exact Decimal prices or float statistics."""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

Price = TypeVar("Price", Decimal, float)


def triggered_stop_limit_sell_price(
    open_: Price, high: Price, low: Price, trigger: Price, limit: Price, slippage: Price
) -> Price | None:
    """The price a sell stop-limit fills at in the candle that triggers it (its low reached the trigger), or None
    when the order rests (the candle opened below the limit and never traded back up to it).

    The stop triggers where the candle first trades at or below it: at the trigger when the candle opens above it
    and trades through it, at the open when the candle opens below it (a gap down). Its limit order is marketable if
    that price is at or above the limit, and sells like a market order: that price less the slippage (a fraction),
    never below the limit (a limit order) nor the candle's low (no trade printed lower). An open below the limit
    leaves it resting like any sell limit (resting_limit_sell_price). Callers with exact prices round the result
    down to the tick (the limit and the low are on it, so the floors hold).
    """
    crossed = min(open_, trigger)
    if crossed < limit:
        return resting_limit_sell_price(open_, high, limit)
    return max(crossed * (1 - slippage), limit, low)


def resting_limit_sell_price(open_: Price, high: Price, limit: Price) -> Price | None:
    """A sell limit resting from an earlier candle fills at the open when the candle opens above it, else at the
    limit once the high reaches it; None while the whole candle is below it."""
    if high < limit:
        return None
    return max(open_, limit)
