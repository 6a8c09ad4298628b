"""The simulated market as the endpoints ask it: known symbols, their rules and last prices, or Binance's errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal

from app.devtools.api_errors import BinanceApiError
from app.devtools.request_params import required
from app.domain.errors import ConfigurationError, DataError
from app.domain.values import SymbolRules
from app.venues.paper.market import SimulatedMarket


class MarketLookup:
    """Symbols, rules and prices of one simulated market; an unknown symbol or a missing price is an error answer."""

    def __init__(self, market: SimulatedMarket) -> None:
        self.market = market

    def rules(self, symbol: str) -> SymbolRules:
        try:
            return self.market.rules(symbol)
        except ConfigurationError as e:
            raise BinanceApiError(-1121) from e

    def symbol(self, params: Mapping[str, str]) -> str:
        """The request's `symbol`, which must be one the market trades."""
        symbol = required(params, "symbol")
        self.rules(symbol)
        return symbol

    def all_symbols(self) -> list[str]:
        known = []
        for symbol in self.market.candles.symbols():
            try:
                self.market.rules(symbol)
            except ConfigurationError:
                continue
            known.append(symbol)
        return known

    def requested_symbols(self, params: Mapping[str, str]) -> list[str]:
        """`symbol`, or the JSON list `symbols`, or every symbol the market trades."""
        if "symbol" in params:
            return [self.symbol(params)]
        if "symbols" in params:
            try:
                names = json.loads(params["symbols"])
            except ValueError as e:
                raise BinanceApiError(-1100, "Illegal characters found in parameter 'symbols'.") from e
            return [self.symbol({"symbol": str(name)}) for name in names]
        return self.all_symbols()

    def last_price(self, symbol: str, now_ms: int) -> Decimal:
        try:
            return self.market.last_price(symbol, now_ms)
        except DataError as e:
            raise BinanceApiError(-1000, f"The simulator has no candle for {symbol} at this time: {e}") from e
