"""Per user decisions: skips, the risk manager's verdict, the decision log, and the entry it approves."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
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


class Decisions(Desk):
    """One user's cycle: rate limit, each symbol's skip reason or risk decision, and the approved entries."""

    def __init__(self, parts: EngineParts, risk_manager: RiskChecker, entries: Entries) -> None:
        super().__init__(parts)
        self.risk_manager = risk_manager
        self.entries = entries

    async def process_user(
        self, config: TradingConfig, analyses: Mapping[tuple[str, str], SymbolAnalysis], now: datetime,
        summary: CycleSummary,
    ) -> None:
        async with self.uow() as uow:
            if await self._remaining_rate_limit(uow, config.user_id, now) > 0:
                return
            await uow.configs.mark_analyzed(config.user_id, now)
            await uow.commit()
        for symbol in config.symbols:
            analysis = analyses.get((symbol, config.analyzer))
            if analysis is None:
                continue
            try:
                await self._decide(config, analysis, now, summary)
            except (ExchangeError, ConfigurationError) as e:
                log.error("user %s, %s: %s", config.user_id, symbol, e)
                await self.emit(config.user_id, EngineError(str(e), symbol=symbol), now)

    async def _remaining_rate_limit(self, uow: EngineBooks, user_id: int, now: datetime) -> float:
        """Seconds until the user may be analysed again (0 when due)."""
        last = await uow.configs.last_analyzed_at(user_id)
        if last is None:
            return 0.0
        due = last + timedelta(seconds=self.settings.user_rate_limit_s)
        # a cycle that runs a little early must not skip a whole interval
        return max(0.0, (due - now).total_seconds() - 1.0)

    async def _decide(self, config: TradingConfig, analysis: SymbolAnalysis, now: datetime, summary: CycleSummary) -> None:
        symbol, signal = analysis.symbol, analysis.report.signal
        async with self.uow() as uow:
            positions: list[PositionRecord] = await uow.positions.for_user(config.user_id)
        open_symbols = tuple(p.symbol for p in positions)
        skip = self.risk_manager.skip_reason(config, symbol, signal, open_symbols, now)
        if skip is not None:
            self.metrics.count_signal(signal.signal, Decision.SKIPPED)
            await self._record_decision(analysis.analysis_id, config.user_id, Decision.SKIPPED, [skip], now)
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
            await self._reject(config.user_id, analysis, decision, now, summary)
            return
        trade = await self.entries.execute(config, symbol, decision, analysis, now)
        self.metrics.count_signal(signal.signal, "executed" if trade else "failed")
        if trade is not None:
            summary.entries += 1
            await self._record_decision(analysis.analysis_id, config.user_id, Decision.EXECUTED, [], now, trade.id)

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

    async def _reject(self, user_id: int, analysis: SymbolAnalysis, decision: RiskDecision, now: datetime,
                      summary: CycleSummary) -> None:
        for reason in decision.reasons:
            summary.rejections[reason.code] = summary.rejections.get(reason.code, 0) + 1
        await self._record_decision(analysis.analysis_id, user_id, Decision.REJECTED, list(decision.reasons), now)
        signal = analysis.report.signal
        await self.emit(user_id, SignalRejected(analysis.symbol, signal.signal.value, signal.confidence,
                                                list(decision.reasons)), now)

    async def _record_decision(self, analysis_id: int, user_id: int, decision: Decision, reasons: list[Reason],
                               now: datetime, trade_id: int | None = None) -> None:
        if log.isEnabledFor(logging.INFO):  # every symbol, every cycle: no joining for a level that is off
            log.info("user %s analysis %s: %s %s", user_id, analysis_id, decision, "; ".join(reasons))
        async with self.uow() as uow:
            await uow.analyses.add_decision(analysis_id, user_id, decision, reasons, now, trade_id)
            await uow.commit()
