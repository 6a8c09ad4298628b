"""The paper venue's market, shared by every account: candles, prices at a time, symbol rules, slippage and fees."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_UP, Decimal
from typing import Protocol

from app.domain.clock import utc_from_ms
from app.domain.errors import ConfigurationError
from app.domain.values import Candle, Side, SymbolRules, Timeframe
from app.marketdata.candles import CandleStore
from app.marketdata.exchange_info import rules_for_candles

FIVE_MIN_MS = Timeframe.M5.ms
COMMISSION_QUANTUM = Decimal("0.00000001")  # Binance's commission precision (8 decimals)


@dataclass(frozen=True, slots=True)
class MarketNeeds:
    """What one call on a paper account is about to read from the market: the rules of `symbol` (and its last price
    when `price`), and each symbol's closed 5m candles from the open time given, for the resting orders' catch-up."""

    symbol: str | None = None
    price: bool = False
    candles_from_ms: Mapping[str, int] = field(default_factory=dict)


class PaperMarket(Protocol):
    """What paper accounts trade against: replayed candles (`SimulatedMarket`) or a live source (`LiveMarket`).
    The reads are synchronous, so that an account's state changes without a pause; `prepare` fetches beforehand."""

    @property
    def candles(self) -> CandleStore:
        """The closed 5m candles the resting orders are matched on."""
        ...

    @property
    def slippage_pct(self) -> Decimal:
        """How far (percent) a market order, or a stop that executes like one, fills past the price it was sent at."""
        ...

    async def prepare(self, needs: MarketNeeds, now_ms: int) -> None: ...

    def rules(self, symbol: str) -> SymbolRules: ...

    def last_price(self, symbol: str, now_ms: int) -> Decimal: ...

    def market_price(self, symbol: str, side: Side, now_ms: int) -> Decimal: ...

    def fee(self, amount: Decimal) -> Decimal: ...

    def candles_known_until(self, symbol: str, from_ms: int, horizon_ms: int) -> int:
        """How far (an open time, at most `horizon_ms`) the symbol's 5m candles from `from_ms` are all known: the
        matcher never walks past a candle the market has not seen yet."""
        ...

    async def klines(self, symbol: str, timeframe: Timeframe, until: datetime, limit: int) -> Sequence[Candle]: ...


def slipped_price(rules: SymbolRules, last: Decimal, side: Side, slippage_pct: Decimal) -> Decimal:
    """Last price moved against the taker by the slippage, then snapped to the tick (against the taker too)."""
    factor = slippage_pct / Decimal(100)
    if side == Side.BUY:
        return rules.round_price_up(last * (1 + factor))
    return rules.round_price_down(last * (1 - factor))


def commission(amount: Decimal, fee_rate: Decimal) -> Decimal:
    return (amount * fee_rate).quantize(COMMISSION_QUANTUM, rounding=ROUND_UP)


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

    async def prepare(self, needs: MarketNeeds, now_ms: int) -> None:
        """Nothing to fetch: every candle is loaded."""

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
        return slipped_price(self.rules(symbol), self.last_price(symbol, now_ms), side, self.slippage_pct)

    def fee(self, amount: Decimal) -> Decimal:
        return commission(amount, self.fee_rate)

    def candles_known_until(self, symbol: str, from_ms: int, horizon_ms: int) -> int:
        return horizon_ms  # the files hold every candle there is

    async def klines(self, symbol: str, timeframe: Timeframe, until: datetime, limit: int) -> Sequence[Candle]:
        self.rules(symbol)
        return self.candles.closed_window(symbol, timeframe, until, limit)
