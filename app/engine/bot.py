"""The trading engine: one decision cycle for every active user, the same on the wall and the simulated clock.

A cycle is a list of named steps, each owned by one part: reconciliation (app/engine/reconciliation.py) finishes what
an earlier step left unfinished, exits (exits.py) watch and close positions, market analysis (analysis.py) reads each
symbol once, decisions (decisions.py) judge each user's signals and entries (entries.py) carry out the approved ones,
protected by protection.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from app.domain.books import Books
from app.domain.clock import Clock
from app.domain.ports import ExchangeAdapter, SignalProvider, SymbolDirectory
from app.domain.records import TradeRecord
from app.domain.risk import RiskLimits, TradingConfig
from app.domain.values import ExitReason, MarketFeatures, TradingState
from app.engine.analysis import (
    AnalysesAhead,
    CycleSummary,
    FeatureBuilder,
    MarketAnalysis,
    SymbolAnalysis,
    analyze_with,
)
from app.engine.decisions import Analyses, BatchOutcome, Decisions
from app.engine.desk import CycleScoped, EngineParts, ExchangeProvider, Publish, PublishMany
from app.engine.entries import Entries
from app.engine.exits import Exits
from app.engine.metrics import Metrics
from app.engine.protection import Protection
from app.engine.reconciliation import Reconciled, Reconciler
from app.engine.selection import SymbolChoices
from app.engine.settings import CANDLES, WARM_UP, BotSettings, EntryPlan, RiskChecker, log

UowFactory = Books  # the name the container and backtest import
# decides a cycle's users elsewhere (app/workers.py: worker processes), given what `decide_users` is given
DecideElsewhere = Callable[[Sequence[TradingConfig], Analyses, datetime, Mapping[int, set[str]], datetime | None],
                           Awaitable[BatchOutcome]]
Housekeeping = Callable[[datetime], Awaitable[Mapping[str, int]]]  # tidies the books at a time: rows deleted per table
# whether the books hold no position and no entry without its trade, answered from memory (a backtest's books)
NothingOpen = Callable[[], bool]

__all__ = [
    "CANDLES", "WARM_UP", "AnalysesAhead", "BotSettings", "CycleScoped", "CycleSummary", "DecideElsewhere", "EntryPlan",
    "ExchangeProvider", "FeatureBuilder", "Housekeeping", "NothingOpen", "Publish", "PublishMany", "RiskChecker", "SymbolAnalysis",
    "TradingBot", "UowFactory", "analyze_with",
]


class TradingBot:
    """The engine's parts, wired once; `run_cycle` is the cycle, the rest is its public face."""

    def __init__(
        self,
        uow: Books,
        exchanges: ExchangeProvider,
        market: ExchangeAdapter,
        analysts: Mapping[str, SignalProvider],
        build_features: FeatureBuilder,
        risk_manager: RiskChecker,
        publish: Publish,
        clock: Clock,
        limits: RiskLimits,
        settings: BotSettings | None = None,
        metrics: Metrics | None = None,
        symbols: SymbolDirectory | None = None,
        publish_many: PublishMany | None = None,
        housekeeping: Housekeeping | None = None,
        housekeeping_interval_s: float = 3600.0,
        nothing_open: NothingOpen | None = None,
    ) -> None:
        self.parts = EngineParts(uow, exchanges, publish, clock, limits, settings or BotSettings(), metrics or Metrics(),
                                 publish_many)
        self.analysis = MarketAnalysis(uow, market, analysts, build_features)
        self.protection = Protection(self.parts)
        self.exits = Exits(self.parts, self.protection)
        self.entries = Entries(self.parts, self.exits)
        self.decisions = Decisions(self.parts, risk_manager, self.entries)
        self.reconciler = Reconciler(self.parts, self.entries)
        self.choices = SymbolChoices(symbols)
        self.state = TradingState.ACTIVE
        self.last_cycle: datetime | None = None  # users decided then continue their decision spans
        self.housekeeping, self.housekeeping_interval_s = housekeeping, housekeeping_interval_s
        self._kept_house_at: datetime | None = None
        self.decide_elsewhere: DecideElsewhere | None = None  # None: this process decides every user
        self.nothing_open = nothing_open  # None: every cycle reconciles and checks exits (the books are a database)
        self._scoped: tuple[ExchangeProvider, bool] | None = None  # the provider last asked whether it is CycleScoped

    async def run_cycle(self, now: datetime) -> CycleSummary:
        """One cycle: finish what is unfinished and monitor exits first, then analyse each symbol once, then decide
        the users, a batch at a time. The paper accounts are read once for the cycle."""
        summary = CycleSummary(now)
        previous, self.last_cycle = self.last_cycle, now
        async with self.accounts_for_the_cycle():
            reconciled = await self._finish_and_watch(now, summary)
            if self.state != TradingState.ACTIVE:
                return summary  # REDUCING and HALTED open nothing; exits and protection above still run
            active = [c for c in await self.active_configs() if c.user_id not in reconciled.unresolved]
            configs = await self.choices.resolve(active, now)
            analyses = await self.analysis.analyze_symbols(configs, now)
            summary.analyses = len(analyses)
            decide = self.decide_elsewhere or self.decide_users
            outcome = await decide(configs, analyses, now, reconciled.in_doubt, previous)
        summary.entries += outcome.entries
        for code, count in outcome.rejections.items():
            summary.rejections[code] = summary.rejections.get(code, 0) + count
        return summary

    async def _finish_and_watch(self, now: datetime, summary: CycleSummary) -> Reconciled:
        """Reconciliation, then the exit checks. A quiet cycle skips both: when the books hold no position and no
        entry without its trade (`nothing_open`), they can do nothing. Reconciliation resolves only the entries the
        books list as unbooked (none), re-protects and checks the order lists of open positions only (none), and
        asks the exchange nothing else; the exit checks walk the open positions (none). Neither writes a row,
        emits an event or reads an account then, and both answer the empty outcome returned here."""
        if self.nothing_open is not None and self.nothing_open():
            return Reconciled(set(), {})
        reconciled = await self.reconciler.reconcile(now)
        summary.exits += await self.exits.check_open_positions(now)
        return reconciled

    async def decide_users(self, configs: Sequence[TradingConfig], analyses: Analyses, now: datetime,
                           in_doubt: Mapping[int, set[str]], previous_cycle: datetime | None) -> BatchOutcome:
        """Every user on the cycle's analyses, in batches of BotSettings.user_batch_size (each a few queries and one
        write); the cycle's tallies, one row per analysis and outcome, are written at the end."""
        size = self.parts.settings.user_batch_size
        if 0 < len(configs) <= size:  # one batch (a backtest's one user): its outcome is the cycle's
            outcome = await self.decisions.decide_batch(configs, analyses, now, in_doubt, previous_cycle)
            await self.decisions.write_tallies(outcome.tally_records())
            return outcome
        outcome = BatchOutcome()
        for start in range(0, len(configs), size):
            batch = configs[start:start + size]
            outcome.add(await self.decisions.decide_batch(batch, analyses, now, in_doubt, previous_cycle))
        await self.decisions.write_tallies(outcome.tally_records())
        return outcome

    def accounts_for_the_cycle(self) -> AbstractAsyncContextManager[object]:
        """The paper accounts read once for what runs inside (a cycle, or a worker's batch of one)."""
        exchanges = self.parts.exchanges
        if self._scoped is None or self._scoped[0] is not exchanges:  # a Protocol isinstance is slow: once per provider
            self._scoped = (exchanges, isinstance(exchanges, CycleScoped))
        return exchanges.cycle() if self._scoped[1] else contextlib.nullcontext()  # type: ignore[attr-defined]

    async def keep_house(self, now: datetime) -> None:
        """Between cycles, at most once per housekeeping interval: the books' housekeeping (retention's pruning),
        whose failure is logged and tried again next time, never raised into the loop."""
        if self.housekeeping is None:
            return
        last = self._kept_house_at
        if last is not None and (now - last).total_seconds() < self.housekeeping_interval_s:
            return
        self._kept_house_at = now
        try:
            deleted = await self.housekeeping(now)
        except Exception:
            log.exception("housekeeping at %s failed", now.isoformat())
            return
        if any(deleted.values()):
            log.info("housekeeping at %s deleted %s", now.isoformat(), dict(deleted))

    async def active_configs(self) -> list[TradingConfig]:
        """Every active user's trading config, as a cycle starts from them."""
        async with self.parts.books() as uow:
            return await uow.configs.active()

    async def close_trade(self, user_id: int, trade_id: int, reason: ExitReason) -> TradeRecord:
        """The manual close: cancel the OCO, sell at market, book it (RuleViolation when it is not open)."""
        return await self.exits.close_trade(user_id, trade_id, reason)

    async def analyse_symbol(self, symbol: str, analyzer: str, now: datetime) -> SymbolAnalysis | None:
        """Features and the analyst's answer for one symbol (None without market data); nothing is stored."""
        return await self.analysis.analyse_symbol(symbol, analyzer, now)

    async def market_features(self, symbol: str, now: datetime) -> MarketFeatures:
        """The cycle's features of one symbol (market data errors propagate)."""
        return await self.analysis.market_features(symbol, now)

    # the collaborators a deployment (or a test) may swap after assembly: every part sees the change
    @property
    def exchanges(self) -> ExchangeProvider:
        return self.parts.exchanges

    @exchanges.setter
    def exchanges(self, exchanges: ExchangeProvider) -> None:
        self.parts.exchanges = exchanges

    @property
    def clock(self) -> Clock:
        return self.parts.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.parts.clock = clock

    @property
    def analysts(self) -> Mapping[str, SignalProvider]:
        return self.analysis.analysts

    @analysts.setter
    def analysts(self, analysts: Mapping[str, SignalProvider]) -> None:
        self.analysis.analysts = analysts

    @property
    def ahead(self) -> AnalysesAhead | None:
        """A backtest's precomputed analyses (None: every analysis is computed in the cycle)."""
        return self.analysis.ahead

    @ahead.setter
    def ahead(self, ahead: AnalysesAhead | None) -> None:
        self.analysis.ahead = ahead
