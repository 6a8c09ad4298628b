"""The paper venue's market, shared by every account: candles, prices at a time, symbol rules, slippage and fees."""

from __future__ import annotations

from decimal import ROUND_UP, Decimal

from app.domain.clock import utc_from_ms
from app.domain.errors import ConfigurationError
from app.domain.values import Side, SymbolRules, Timeframe
from app.marketdata.candles import CandleStore

FIVE_MIN_MS = Timeframe.M5.ms
COMMISSION_QUANTUM = Decimal("0.00000001")  # Binance's commission precision (8 decimals)


def _rules(symbol: str, base: str, tick: str, step: str, max_qty: str) -> SymbolRules:
    return SymbolRules(
        symbol=symbol,
        base_asset=base,
        quote_asset="USDT",
        tick_size=Decimal(tick),
        step_size=Decimal(step),
        min_qty=Decimal(step),
        max_qty=Decimal(max_qty),
        min_notional=Decimal("5"),
        min_price=Decimal(tick),
        max_price=Decimal("1000000"),
    )


def default_symbol_rules() -> dict[str, SymbolRules]:
    """Binance-like spot filters for the four bundled symbols."""
    return {
        "BTCUSDT": _rules("BTCUSDT", "BTC", "0.01", "0.00001", "9000"),
        "ETHUSDT": _rules("ETHUSDT", "ETH", "0.01", "0.0001", "9000"),
        "SOLUSDT": _rules("SOLUSDT", "SOL", "0.01", "0.001", "90000"),
        "BNBUSDT": _rules("BNBUSDT", "BNB", "0.01", "0.001", "90000"),
    }


class SimulatedMarket:
    """Shared, read-only market: prices at a time, symbol rules, slippage (percent) and the fee rate (fraction)."""

    def __init__(
        self,
        candles: CandleStore,
        rules: dict[str, SymbolRules] | None = None,
        slippage_pct: Decimal = Decimal("0"),
        fee_rate: Decimal = Decimal("0.001"),
    ) -> None:
        self.candles = candles
        self._rules = dict(rules) if rules is not None else default_symbol_rules()
        self.slippage_pct = Decimal(slippage_pct)
        self.fee_rate = Decimal(fee_rate)

    def rules(self, symbol: str) -> SymbolRules:
        found = self._rules.get(symbol)
        if found is None or not self.candles.has_symbol(symbol):
            raise ConfigurationError(
                f"Invalid symbol {symbol!r}: the simulated exchange has no rules or candles for it"
            )
        return found

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
