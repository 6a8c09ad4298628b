"""The live venue's pairs and their 24 h volume ranking, read from Binance and kept for a while."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from app.domain.clock import Clock
from app.domain.symbols import tradable_problem
from app.domain.values import SymbolRules
from app.venues.binance.client import BinanceService

RULES_REFRESH = timedelta(hours=1)
RANKING_REFRESH = timedelta(hours=1)


class VenueDirectory:
    """The `SymbolDirectory` port on Binance: exchangeInfo (every symbol, refreshed hourly, so a halted pair is
    noticed) and ticker/24hr quote volumes (refreshed hourly). A failed refresh keeps nothing stale silently: the
    error reaches the caller, which decides whether the last answer will do."""

    def __init__(self, client: BinanceService, clock: Clock) -> None:
        self.client, self.clock = client, clock
        self._rules: dict[str, SymbolRules] = {}
        self._rules_at: datetime | None = None
        self._ranked: tuple[str, ...] = ()
        self._ranked_at: datetime | None = None

    async def listed(self) -> Mapping[str, SymbolRules]:
        now = self.clock.now()
        if self._rules_at is None or now - self._rules_at >= RULES_REFRESH:
            self._rules = await self.client.get_exchange_rules()
            self._rules_at = now
        return self._rules

    async def ranked(self, now: datetime) -> tuple[str, ...]:
        if self._ranked_at is None or now - self._ranked_at >= RANKING_REFRESH:
            listed = await self.listed()
            volumes = {s: v for s, v in (await self.client.get_24h_quote_volumes()).items()
                       if s in listed and tradable_problem(listed[s]) is None}  # USDT volumes only compare
            self._ranked = tuple(s for s, v in sorted(volumes.items(), key=lambda kv: (-kv[1], kv[0])) if v > 0)
            self._ranked_at = now
        return self._ranked
