"""Per user decisions: skips, the risk manager's verdict, the decision log, and the entry it approves."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.domain.books import EngineBooks
from app.domain.errors import ConfigurationError, ExchangeError
from app.domain.events import EngineError, SignalAnalysed, SignalRejected
from app.domain.records import PositionRecord
from app.domain.risk import TradingConfig, UserRiskContext
from app.domain.values import Decision, Reason, RiskDecision
from app.engine.analysis import CycleSummary, SymbolAnalysis
from app.engine.desk import Desk, EngineParts
from app.engine.entries import Entries
from app.engine.settings import RiskChecker, log


@dataclass(slots=True)
class _UserCycle:
    """One user's cycle: the positions the decisions see, and the decisions to write when the user is done."""

    config: TradingConfig
    positions: list[PositionRecord]
    in_doubt: frozenset[str]  # symbols of entries the exchange denied: held, for the rules, until they are settled
    held: tuple[str, ...] = ()  # what the pre-checks see as held: the positions' symbols, then those in doubt

    def __post_init__(self) -> None:
        self.see(self.positions)

    def see(self, positions: list[PositionRecord]) -> None:
        self.positions = positions
        symbols = tuple(p.symbol for p in positions)
        self.held = symbols + tuple(sorted(self.in_doubt - set(symbols))) if self.in_doubt else symbols
    decided: list[tuple[int, Decision, list[Reason], int | None]] = field(default_factory=list)


class Decisions(Desk):
    """One user's cycle: rate limit, each symbol's skip reason or risk decision, and the approved entries."""

    def __init__(self, parts: EngineParts, risk_manager: RiskChecker, entries: Entries) -> None:
        super().__init__(parts)
        self.risk_manager = risk_manager
        self.entries = entries

    async def process_user(
        self, config: TradingConfig, analyses: Mapping[tuple[str, str], SymbolAnalysis], now: datetime,
        summary: CycleSummary, in_doubt: frozenset[str] = frozenset(),
    ) -> None:
        """Each of the user's symbols decided in turn; the books are read once at the start and the decisions
        written once at the end (an entry writes its own rows as it goes: they must exist before the order)."""
        async with self.uow() as uow:
            if await self._remaining_rate_limit(uow, config.user_id, now) > 0:
                return
            user = _UserCycle(config, await uow.positions.for_user(config.user_id), in_doubt)
        for symbol in config.symbols:
            analysis = analyses.get((symbol, config.analyzer))
            if analysis is None:
                continue
            try:
                await self._decide(user, analysis, now, summary)
            except (ExchangeError, ConfigurationError) as e:
                log.error("user %s, %s: %s", config.user_id, symbol, e)
                await self.emit(config.user_id, EngineError(str(e), symbol=symbol), now)
        await self._write_decisions(user, now)

    async def _write_decisions(self, user: _UserCycle, now: datetime) -> None:
        async with self.uow() as uow:
            await uow.configs.mark_analyzed(user.config.user_id, now)
            for analysis_id, decision, reasons, trade_id in user.decided:
                await uow.analyses.add_decision(analysis_id, user.config.user_id, decision, reasons, now, trade_id)
            await uow.commit()

    async def _remaining_rate_limit(self, uow: EngineBooks, user_id: int, now: datetime) -> float:
        """Seconds until the user may be analysed again (0 when due)."""
        last = await uow.configs.last_analyzed_at(user_id)
        if last is None:
            return 0.0
        due = last + timedelta(seconds=self.settings.user_rate_limit_s)
        # a cycle that runs a little early must not skip a whole interval
        return max(0.0, (due - now).total_seconds() - 1.0)

    async def _decide(self, user: _UserCycle, analysis: SymbolAnalysis, now: datetime, summary: CycleSummary) -> None:
        config, positions = user.config, user.positions
        symbol, signal = analysis.symbol, analysis.report.signal
        skip = self.risk_manager.skip_reason(config, symbol, signal, user.held, now)
        if skip is not None:
            self.metrics.count_signal(signal.signal, Decision.SKIPPED)
            self._record(user, analysis.analysis_id, Decision.SKIPPED, [skip])
            return
        await self.emit(config.user_id, SignalAnalysed(symbol, signal.signal.value, signal.confidence, analysis.regime,
                                                       round(analysis.confluence, 2)), now)
        features = analysis.entry_features()
        if features is None:
            raise RuntimeError(f"{symbol} at {now.isoformat()}: a {signal.signal.value} signal came without its features")
        context = await self._risk_context(config, symbol, positions, now)
        decision = self.risk_manager.validate_trade_signal(signal, features, context)
        if not decision.approved:
            self.metrics.count_signal(signal.signal, Decision.REJECTED)
            await self._reject(user, analysis, decision, now, summary)
            return
        trade = await self.entries.execute(config, symbol, decision, analysis, now)
        self.metrics.count_signal(signal.signal, "executed" if trade else "failed")
        if trade is not None:
            summary.entries += 1
            self._record(user, analysis.analysis_id, Decision.EXECUTED, decision.profile_note(), trade.id)
            async with self.uow() as uow:  # the next symbol's checks see the new position
                user.see(await uow.positions.for_user(config.user_id))

    async def _risk_context(self, config: TradingConfig, symbol: str, positions: Sequence[PositionRecord],
                            now: datetime) -> UserRiskContext:
        exchange = await self.exchanges.for_user(config.user_id)
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        async with self.uow() as uow:
            entries_today = await uow.trades.entries_since(config.user_id, day_start)
            results = await uow.trades.recent_results(config.user_id, self.parts.limits.win_rate_lookback_trades)
        balance = await exchange.get_account_balance(self.settings.quote_asset)
        return UserRiskContext(
            user_id=config.user_id, config=config, usdt_balance=balance.free,
            open_symbols=tuple(p.symbol for p in positions), entries_today=entries_today, recent_results=results,
            rules=await exchange.get_symbol_rules(symbol), cycle_time=now,
        )

    async def _reject(self, user: _UserCycle, analysis: SymbolAnalysis, decision: RiskDecision, now: datetime,
                      summary: CycleSummary) -> None:
        for reason in decision.reasons:
            summary.rejections[reason.code] = summary.rejections.get(reason.code, 0) + 1
        self._record(user, analysis.analysis_id, Decision.REJECTED, [*decision.reasons, *decision.profile_note()])
        signal = analysis.report.signal
        await self.emit(user.config.user_id, SignalRejected(analysis.symbol, signal.signal.value, signal.confidence,
                                                list(decision.reasons)), now)

    @staticmethod
    def _record(user: _UserCycle, analysis_id: int, decision: Decision, reasons: list[Reason],
                trade_id: int | None = None) -> None:
        """A decision for the log, written with the user's others when the user is done."""
        if log.isEnabledFor(logging.INFO):  # every symbol, every cycle: no joining for a level that is off
            log.info("user %s analysis %s: %s %s", user.config.user_id, analysis_id, decision, "; ".join(reasons))
        user.decided.append((analysis_id, decision, reasons, trade_id))
