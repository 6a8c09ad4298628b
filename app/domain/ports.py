"""Ports: what the engine needs from an exchange, an analyst and a source of candles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from app.domain.values import (
    AnalystReport,
    Balance,
    Candle,
    MarketFeatures,
    OcoOrder,
    Order,
    Side,
    Signal,
    SymbolRules,
    Timeframe,
)


class SymbolDirectory(Protocol):
    """The pairs a venue lists (with their rules) and how much each traded: what users choose from, and what
    resolves a `top:N` rule."""

    async def listed(self) -> Mapping[str, SymbolRules]: ...

    async def ranked(self, now: datetime) -> Sequence[str]:
        """Listed symbols by 24 h quote volume, most traded first, from what was known at `now` (no lookahead);
        the ranking changes at most once an hour."""
        ...


class ExchangeAdapter(Protocol):
    """One user's account on one exchange. Every quantity and price is a Decimal already on the symbol's grid."""

    async def get_symbol_rules(self, symbol: str) -> SymbolRules: ...

    async def get_klines(self, symbol: str, timeframe: Timeframe, limit: int) -> Sequence[Candle]:
        """The last `limit` closed candles, oldest first."""
        ...

    async def get_symbol_price(self, symbol: str) -> Decimal: ...

    async def get_balances(self) -> list[Balance]: ...

    async def get_account_balance(self, asset: str = "USDT") -> Balance: ...

    async def place_market_order(self, symbol: str, side: Side, quantity: Decimal, client_order_id: str) -> Order: ...

    async def place_oco_order(
        self,
        symbol: str,
        quantity: Decimal,
        take_profit: Decimal,
        stop_price: Decimal,
        stop_limit_price: Decimal,
        list_client_order_id: str,
    ) -> OcoOrder:
        """A protective SELL OCO: LIMIT_MAKER at `take_profit`, STOP_LOSS_LIMIT triggered at `stop_price`.

        Leg client ids are `<list id>-tp` and `<list id>-sl`.
        """
        ...

    async def get_oco_order_status(self, symbol: str, list_client_order_id: str) -> OcoOrder:
        """The list with each leg's current status and fills."""
        ...

    async def cancel_oco_order(self, symbol: str, list_client_order_id: str) -> OcoOrder: ...

    async def get_order(self, symbol: str, client_order_id: str) -> Order:
        """Raises OrderNotFound if the exchange never saw it."""
        ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> Order: ...

    async def get_open_oco_orders(self) -> list[OcoOrder]: ...


class SignalProvider(Protocol):
    """An analyst: reads one symbol's features and proposes a signal. Must never raise into the loop."""

    name: str

    async def analyze(self, features: MarketFeatures) -> Signal: ...


class CandleSource(Protocol):
    """Closed candles known at a time: the simulated exchange and the backtester read from one."""

    def symbols(self) -> Sequence[str]: ...

    def closed_candles(self, symbol: str, timeframe: Timeframe, until: datetime, limit: int) -> Sequence[Candle]:
        """The last `limit` candles that closed at or before `until`, oldest first."""
        ...


class DetailedSignalProvider(SignalProvider, Protocol):
    """An analyst that also reports prompt, raw answer, latency and tokens for the decision log."""

    async def analyze_detailed(self, features: MarketFeatures) -> AnalystReport: ...
