"""The books' arithmetic: fees in USDT, net P&L of a round trip, and re-anchoring exits to the fill."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from app.domain.values import ZERO, Order, SymbolRules

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
    price: Decimal
    quote_received: Decimal  # gross, before the commission
    fee_usdt: Decimal


def exit_fill(order: Order, rules: SymbolRules) -> ExitFill:
    fee = order.commission_in(rules.quote_asset) + order.commission_in(rules.base_asset) * order.avg_price
    return ExitFill(order.avg_price, order.cumulative_quote_qty, fee)


def net_profit(entry_quote_spent: Decimal, exit_: ExitFill) -> Decimal:
    """The USDT the round trip added to the account: received minus its fee minus what the entry cost.

    The entry's base-asset fee is already inside: it shrank the quantity that could be sold.
    """
    return exit_.quote_received - exit_.fee_usdt - entry_quote_spent


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
