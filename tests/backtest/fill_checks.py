"""Every fill a backtest booked, against its candle: the 5m candle that had closed last at the fill's time.

A resting or triggered leg (take-profit, stop-limit) fills during its candle, at a price the candle printed: inside
its [low, high] (a stop also at or above its limit). A market order fills at its candle's close (the last price when
it was sent) moved against the taker by the configured slippage, to the tick: the one price that may lie outside the
candle, by the slippage and no more. Used by the backtest test over the bundled sample and by
`benchmarks/fills_inside_candles.py` over a year of the shared data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from app.backtest.runner import BacktestEngine
from app.domain.records import OrderRecord, Purpose, TradeRecord
from app.domain.values import Candle, OrderType, Side, SymbolRules, Timeframe

LEGS = (OrderType.LIMIT_MAKER, OrderType.STOP_LOSS_LIMIT)


@dataclass(frozen=True, slots=True)
class BookedFill:
    row: OrderRecord
    price: Decimal  # the average price of its one fill (the paper venue fills an order at one price)
    candle: Candle

    @property
    def inside(self) -> bool:
        return self.candle.low <= self.price <= self.candle.high

    def case(self) -> str:
        """How the candle met the order: the stop's cases, or the order type."""
        if self.row.type != OrderType.STOP_LOSS_LIMIT:
            return f"{self.row.type.value} {self.row.side.value}"
        stop, candle = self.row.stop_price, self.candle
        if stop is not None and candle.open < stop:
            return "stop-limit, candle opened below the stop"
        return "stop-limit, through the stop" if stop is not None and candle.low <= stop else "stop-limit, resting"


def booked_fills(engine: BacktestEngine) -> list[BookedFill]:
    """Every order row of the run that executed, with its candle."""
    fills = []
    for row in engine.store.tables.orders.values():
        if row.executed_qty > 0:
            assert row.transact_time is not None, row
            (candle,) = engine.candles.closed_candles(row.symbol, Timeframe.M5, row.transact_time, 1)
            fills.append(BookedFill(row, row.cumulative_quote_qty / row.executed_qty, candle))
    return fills


def market_price(rules: SymbolRules, candle: Candle, side: Side, slippage_pct: Decimal) -> Decimal:
    factor = slippage_pct / Decimal(100)
    if side == Side.BUY:
        return rules.round_price_up(candle.close * (1 + factor))
    return rules.round_price_down(candle.close * (1 - factor))


def misplaced(fill: BookedFill, rules: SymbolRules, slippage_pct: Decimal) -> str | None:
    """Why a fill's price is not the one its candle allows, or None."""
    row = fill.row
    if row.type in LEGS:
        below_limit = row.type == OrderType.STOP_LOSS_LIMIT and row.price is not None and fill.price < row.price
        if fill.inside and not below_limit:
            return None
    elif row.type == OrderType.MARKET and fill.price == market_price(rules, fill.candle, row.side, slippage_pct):
        return None
    return f"{row.client_order_id} {row.type.value} {row.side.value} at {fill.price}: candle {fill.candle}"


def cases(fills: list[BookedFill]) -> Counter[str]:
    return Counter(fill.case() for fill in fills)


def misplaced_exits(engine: BacktestEngine, trades: Sequence[TradeRecord], rules: Mapping[str, SymbolRules],
                    slippage_pct: Decimal) -> list[str]:
    """Closed trades whose exit price is not one their exit's candle (the 5m candle closed at `closed_at`)
    allows: inside it when legs sold, its close less the slippage when a market order sold."""
    tables, wrong = engine.store.tables, []
    for trade in (t for t in trades if t.closed_at is not None and t.exit_price is not None):
        assert trade.closed_at is not None and trade.exit_price is not None
        rows = [tables.orders[i] for i in tables.orders_by_trade[trade.id]]
        sold = {row.type for row in rows if row.purpose == Purpose.EXIT and row.executed_qty > 0}
        (candle,) = engine.candles.closed_candles(trade.symbol, Timeframe.M5, trade.closed_at, 1)
        if sold <= set(LEGS):
            allowed = candle.low <= trade.exit_price <= candle.high
        else:
            allowed = trade.exit_price == market_price(rules[trade.symbol], candle, Side.SELL, slippage_pct)
        if not allowed:
            wrong.append(f"trade {trade.id} {trade.exit_reason} at {trade.exit_price}: candle {candle}")
    return wrong
