"""The books' arithmetic: fees in USDT, net P&L of a round trip, and re-anchoring exits to the fill."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from app.domain.records import OrderRecord, Remainder
from app.domain.values import ZERO, Order, SymbolRules, canonical

PCT_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class EntryFill:
    amount: Decimal  # base quantity bought (executedQty)
    price: Decimal  # average fill
    quote_spent: Decimal  # cummulativeQuoteQty
    fee_usdt: Decimal  # the base-asset commission valued at the fill price
    held: Decimal  # what the account actually received: amount minus the base-asset commission


def entry_fill(order: Order, rules: SymbolRules) -> EntryFill:
    base_fee = order.commission_in(rules.base_asset)
    quote_fee = order.commission_in(rules.quote_asset)
    price = order.avg_price
    return EntryFill(
        amount=order.executed_qty,
        price=price,
        quote_spent=order.cumulative_quote_qty,
        fee_usdt=base_fee * price + quote_fee,
        held=order.executed_qty - base_fee,
    )


@dataclass(frozen=True, slots=True)
class ExitFill:
    price: Decimal  # average over every exit order
    quote_received: Decimal  # gross, before the commission
    fee_usdt: Decimal
    quantity: Decimal  # base sold


def recorded_exit_fill(rows: Sequence[OrderRecord], rules: SymbolRules) -> ExitFill:
    """An exit made of one or more sells (a partly filled order and the one that sold the rest), from the
    exchange's state recorded on their rows. Each row's commission is in one asset (its first fill's)."""
    quantity = sum((row.executed_qty for row in rows), ZERO)
    quote = sum((row.cumulative_quote_qty for row in rows), ZERO)
    if quantity == 0:
        raise ValueError("an exit fill needs at least one executed sell")
    fee = sum((_fee_usdt(row, rules) for row in rows), ZERO)
    return ExitFill(quote / quantity, quote, fee, quantity)


def _fee_usdt(row: OrderRecord, rules: SymbolRules) -> Decimal:
    if row.commission_asset == rules.base_asset:
        return row.commission * row.cumulative_quote_qty / row.executed_qty
    return row.commission if row.commission_asset == rules.quote_asset else ZERO


COST_QUANTUM = Decimal("1E-10")  # USDT: a remainder's value at an average (divided) price, cut to a fixed quantum


def remainder_cost(amount: Decimal, exit_price: Decimal) -> Decimal:
    """The value the books carry for a remainder: its amount at the exit's average price, to 1E-10 USDT. The average
    is a quotient with up to 28 digits; cut to a fixed quantum, every sum of P&L and costs stays exact in Decimal."""
    return canonical((amount * exit_price).quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN))


def round_trip_profit(entry_quote_spent: Decimal, exit_: ExitFill, carried_in: Remainder, left: Remainder) -> Decimal:
    """What the trade's own round trip made: the sell's proceeds less its fee and the entry's cost, less the cost of
    the remainder an earlier trade left (which this exit sold along), plus the remainder this trade leaves, valued
    at its exit price (`left.cost`), which the next exit of the symbol is charged in turn.

    The entry's base-asset fee is already inside: it shrank the quantity that could be sold. Summed over a user's
    closed trades, the P&L is the USDT they added plus the cost of the remainder carried now, so
    USDT + carried cost == start + realised P&L - cost of open positions, exactly.
    """
    return exit_.quote_received - exit_.fee_usdt - entry_quote_spent - carried_in.cost + left.cost


def profit_pct(profit: Decimal, entry_quote_spent: Decimal) -> Decimal:
    if entry_quote_spent == 0:
        return ZERO
    return (profit * 100 / entry_quote_spent).quantize(PCT_QUANTUM)


def reanchor(fill_price: Decimal, planned_entry: Decimal, stop: Decimal, target: Decimal,
             rules: SymbolRules) -> tuple[Decimal, Decimal]:
    """Move stop and target by the fill's slippage so their distances hold against the real entry."""
    stop_at = rules.round_price_down(fill_price * stop / planned_entry)
    target_at = rules.round_price_up(fill_price * target / planned_entry)
    return stop_at, target_at


def stop_limit_price(stop: Decimal, gap_pct: Decimal, rules: SymbolRules) -> Decimal:
    """The stop-limit's limit, a little below the trigger so it fills in a falling market."""
    return rules.round_price_down(stop * (1 - gap_pct / 100))
