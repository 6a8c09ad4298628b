"""The paper venue's market, shared by every account: candles, prices at a time, symbol rules, slippage and fees."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_UP, Decimal

from app.domain.clock import utc_from_ms
from app.domain.errors import ConfigurationError
from app.domain.values import Side, SymbolRules, Timeframe
from app.marketdata.candles import CandleStore
from app.marketdata.exchange_info import rules_for_candles

FIVE_MIN_MS = Timeframe.M5.ms
COMMISSION_QUANTUM = Decimal("0.00000001")  # Binance's commission precision (8 decimals)


class SimulatedMarket:
    """Shared, read-only market: prices at a time, symbol rules, slippage (percent) and the fee rate (fraction)."""

    def __init__(
        self,
        candles: CandleStore,
        rules: Mapping[str, SymbolRules] | None = None,
        slippage_pct: Decimal = Decimal("0"),
        fee_rate: Decimal = Decimal("0.001"),
    ) -> None:
        self.candles = candles
        # the rules stored beside the candles (exchange_info.json), else inferred from the candles
        self._rules = dict(rules) if rules is not None else rules_for_candles(candles, candles.directory)
        self.slippage_pct = Decimal(slippage_pct)
        self.fee_rate = Decimal(fee_rate)

    def rules(self, symbol: str) -> SymbolRules:
        found = self._rules.get(symbol)
        if not self.candles.has_symbol(symbol):
            raise ConfigurationError(f"Invalid symbol {symbol!r}: the simulated exchange has no candles for it")
        if found is None:
            raise ConfigurationError(f"Invalid symbol {symbol!r}: the simulated exchange has no rules for it "
                                     "(none stored in exchange_info.json and none inferable from its name)")
        return found

    def update_rules(self, rules: SymbolRules) -> None:
        """The venue changed a symbol's rules (a halt, a new tick size), as Binance does without notice."""
        self._rules[rules.symbol] = rules

    def all_rules(self) -> dict[str, SymbolRules]:
        """The rules of every symbol this market trades (it has candles and rules)."""
        return {s: r for s, r in self._rules.items() if self.candles.has_symbol(s)}

    def last_price(self, symbol: str, now_ms: int) -> Decimal:
        self.rules(symbol)
        return self.candles.price_at(symbol, utc_from_ms(now_ms))

    def market_price(self, symbol: str, side: Side, now_ms: int) -> Decimal:
        """Last price moved against the taker by the slippage, then snapped to the tick (against the taker too)."""
        rules = self.rules(symbol)
        factor = self.slippage_pct / Decimal(100)
        if side == Side.BUY:
            return rules.round_price_up(self.last_price(symbol, now_ms) * (1 + factor))
        return rules.round_price_down(self.last_price(symbol, now_ms) * (1 - factor))

    def fee(self, amount: Decimal) -> Decimal:
        return (amount * self.fee_rate).quantize(COMMISSION_QUANTUM, rounding=ROUND_UP)
