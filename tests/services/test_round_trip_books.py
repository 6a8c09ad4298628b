"""Every closed trade's P&L is its own round trip, worked out again from the exchange's orders: the sells' proceeds
less their fees and the entry's cost, less the cost of the remainder an earlier trade left, plus the remainder it
leaves valued at its exit price. Two weeks of real candles, four symbols, in Decimal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.domain.records import Remainder
from app.domain.values import ZERO, TradeStatus
from tests.books import add_paper_user, carried_cost

START = datetime(2025, 10, 6, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")


def _quote_fees(order: dict[str, Any]) -> Decimal:
    return sum((Decimal(f["commission"]) for f in order["fills"] if f["commission_asset"] == "USDT"), ZERO)


def _base_fees(order: dict[str, Any]) -> Decimal:
    return sum((Decimal(f["commission"]) for f in order["fills"] if f["commission_asset"] != "USDT"), ZERO)


async def test_each_trade_books_its_own_round_trip(settings: Settings) -> None:
    clock = SimulatedClock(START)
    container = Container(settings, market_clock=clock)
    user_id = await add_paper_user(container, clock.now(), symbols=SYMBOLS)
    while clock.now() < START + timedelta(days=14):
        clock.advance(timedelta(minutes=5))
        await container.bot.run_cycle(clock.now())
    trades = await container.bot_trades(user_id)
    exchange = await container.exchanges.for_user(user_id)
    orders = (await exchange.state_snapshot())["orders"]
    by_id = {o["client_order_id"]: o for o in orders}
    carried = {symbol: Remainder() for symbol in SYMBOLS}
    checked = with_remainder = 0
    for trade in sorted(trades, key=lambda t: t.id):
        if trade.status != TradeStatus.CLOSED:
            continue
        entry = by_id[trade.entry_client_order_id]
        sells = [o for o in orders if o["side"] == "SELL" and Decimal(o["executed_qty"]) > 0
                 and o["client_order_id"].startswith(f"{trade.entry_client_order_id}-")]
        sold = sum((Decimal(o["executed_qty"]) for o in sells), ZERO)
        gross = sum((Decimal(o["cumulative_quote_qty"]) for o in sells), ZERO)
        exit_price = gross / sold
        held = Decimal(entry["executed_qty"]) - _base_fees(entry) + carried[trade.symbol].amount
        left = held - sold
        left_cost = (left * exit_price).quantize(Decimal("1E-10"))  # the books value it to 1E-10 USDT
        expected = (gross - sum((_quote_fees(o) for o in sells), ZERO) - Decimal(entry["cumulative_quote_qty"])
                    - carried[trade.symbol].cost + left_cost)
        assert trade.profit_loss == expected, f"trade {trade.id}: booked {trade.profit_loss}, its round trip {expected}"
        assert trade.exit_price == exit_price
        carried[trade.symbol] = Remainder(left, left_cost)
        checked += 1
        with_remainder += left > 0
    assert checked >= 20 and with_remainder >= 5, (checked, with_remainder)  # the remainders were really exercised
    usdt = (await exchange.get_account_balance("USDT")).total
    realised = sum((t.profit_loss or ZERO for t in trades if t.status == TradeStatus.CLOSED), ZERO)
    open_cost = sum((t.amount * t.price for t in trades if t.status == TradeStatus.FILLED), ZERO)
    assert usdt + await carried_cost(container.uow, user_id, SYMBOLS) == (
        settings.paper_start_balance + realised - open_cost)
    await container.db.dispose()
