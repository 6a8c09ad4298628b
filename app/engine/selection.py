"""Users' symbol lists as the cycle trades them: a `top:N` rule becomes the N most traded USDT pairs of the hour."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from datetime import datetime

from app.domain.errors import TradingError
from app.domain.ports import SymbolDirectory
from app.domain.risk import TradingConfig
from app.domain.symbols import Selection, top_symbols
from app.domain.values import SymbolRules

log = logging.getLogger(__name__)
# a user's list parsed once, not every cycle (Selection is frozen; the lists are tuples)
_selection = functools.lru_cache(maxsize=1024)(Selection.of)


class SymbolChoices:
    """Resolves every active user's `top:N` rule from one ranking per cycle: however many users pick a symbol, its
    market data and analysis stay once per cycle (the analysis collects the union of the resolved lists)."""

    def __init__(self, directory: SymbolDirectory | None) -> None:
        self.directory = directory
        # the last ranking and listing read, used while the venue cannot be asked
        self._ranked: tuple[str, ...] = ()
        self._listed: dict[str, SymbolRules] = {}

    async def resolve(self, configs: Sequence[TradingConfig], now: datetime) -> list[TradingConfig]:
        if not any(_selection(c.symbols).top is not None for c in configs):
            return list(configs)
        ranked, listed = await self._ranking(now)
        resolved = []
        for config in configs:
            selection = _selection(config.symbols)
            if selection.top is None:
                resolved.append(config)
                continue
            top = top_symbols(ranked, listed, selection.top, exclude=config.exclude_symbols)
            symbols = tuple(dict.fromkeys((*selection.named, *top)))
            resolved.append(dataclasses.replace(config, symbols=symbols))
        return resolved

    async def _ranking(self, now: datetime) -> tuple[tuple[str, ...], dict[str, SymbolRules]]:
        if self.directory is not None:
            try:
                listed = dict(await self.directory.listed())
                self._ranked, self._listed = tuple(await self.directory.ranked(now)), listed
            except TradingError as e:
                log.warning("volume ranking unavailable at %s (%s): top:N uses the last one read", now.isoformat(), e)
        return self._ranked, self._listed
