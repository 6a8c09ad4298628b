"""Where a resting sell fills inside one candle: the paper venue's rules, for exact Decimal prices or float statistics."""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

Price = TypeVar("Price", Decimal, float)


def triggered_stop_limit_sell_price(
    open_: Price, high: Price, low: Price, trigger: Price, limit: Price, slippage: Price
) -> Price | None:
    """The price a sell stop-limit fills at in the candle that triggers it (its low reached the trigger), or None
    when the whole candle is below the limit and the order rests.

    The best price the candle offers at or above the limit: the trigger less the slippage (a fraction) when the
    candle trades down through it, never below the candle's low or the limit; the open when the candle opens below
    the trigger but at or above the limit; the limit when it opens below the limit and rises back to it.
    """
    if high < limit:
        return None
    if open_ >= trigger:
        return max(trigger * (1 - slippage), limit, low)
    if open_ >= limit:
        return open_
    return limit


def resting_limit_sell_price(open_: Price, high: Price, limit: Price) -> Price | None:
    """A sell limit resting from an earlier candle fills at the open when the candle opens above it, else at the
    limit once the high reaches it; None while the whole candle is below it."""
    if high < limit:
        return None
    return max(open_, limit)
