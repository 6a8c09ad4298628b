"""The trading engine: one decision cycle for every active user, the same on the wall and the simulated clock."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from app.domain.clock import Clock, ms_from_utc, utc_from_ms
from app.domain.errors import (
    ConfigurationError,
    ExchangeError,
    OrderNotFound,
    OrderRejected,
    OrderStatusUnknown,
    RuleViolation,
    TemporaryExchangeError,
)
from app.domain.ports import ExchangeAdapter, SignalProvider
from app.domain.records import AnalysisRecord, OrderRecord, PositionRecord, TradeRecord
from app.domain.risk import RiskLimits, TradingConfig, UserRiskContext
from app.domain.values import (
    AnalystReport,
    Candle,
    Decision,
    ExitReason,
    ListStatus,
    MarketFeatures,
    OcoOrder,
    Order,
    OrderStatus,
    RiskDecision,
    Side,
    Signal,
    SignalType,
    SymbolRules,
    Timeframe,
    TradeStatus,
    TradingState,
    hold_reason,
    pickled_as_call,
)
from app.services.bookkeeping import entry_fill, exit_fill, net_profit, profit_pct, reanchor, stop_limit_price
from app.services.metrics import Metrics

log = logging.getLogger("trdbot.bot")
trades_log = logging.getLogger("trdbot.trades")
metrics_log = logging.getLogger("trdbot.metrics")

CANDLES = {Timeframe.M5: 288, Timeframe.M15: 100, Timeframe.H1: 168}
# The history a first decision needs: the longest window (168 x 1h candles).
WARM_UP = max(count * timedelta(milliseconds=tf.ms) for tf, count in CANDLES.items())
PENDING_SEND = "PENDING_SEND"
UNKNOWN = "UNKNOWN"

_NUMBER = re.compile(r"-?\d[\d.,]*%?(-\d[\d.,]*%?)?")


def reason_key(reason: str) -> str:
    """A reason without its numbers and detail, so that reasons can be counted: 'confidence N below threshold N'."""
    return _head_key(reason.split(": ", 1)[0].split(" (", 1)[0])


@functools.lru_cache(maxsize=4096)
def _head_key(head: str) -> str:
    """The numbers of a reason's head replaced (every symbol and cycle counts one reason: heads repeat)."""
    return _NUMBER.sub("N", head).strip()


def _confluence_score(confluence: float) -> Decimal:
    """The confluence as the decision log keeps it (two decimals); scores repeat, the Decimal is made once (zeros
    apart: 0.0 and -0.0 would share a cache entry)."""
    return _decimal_score(confluence) if confluence else Decimal(str(round(confluence, 2)))


@functools.lru_cache(maxsize=16384)
def _decimal_score(confluence: float) -> Decimal:
    return Decimal(str(round(confluence, 2)))


UowFactory = Callable[[], AbstractAsyncContextManager[Any]]
Publish = Callable[[int, str, datetime, dict[str, Any]], Awaitable[Any]]
FeatureBuilder = Callable[[str, datetime, Sequence[Candle], Sequence[Candle], Sequence[Candle]], MarketFeatures]


class ExchangeProvider(Protocol):
    async def for_user(self, user_id: int) -> ExchangeAdapter: ...


class RiskChecker(Protocol):
    def validate_trade_signal(self, signal: Signal, features: MarketFeatures, context: UserRiskContext) -> RiskDecision: ...


@dataclass(frozen=True, slots=True)
class BotSettings:
    user_rate_limit_s: int = 300
    oco_place_retries: int = 3
    quote_asset: str = "USDT"


@dataclass(frozen=True, slots=True)
class EntryPlan:
    """What an entry was meant to be; stored on its order row so a restart can finish it."""

    entry_price: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    confidence: int
    analysis_id: int | None


@pickled_as_call
@dataclass(slots=True)
class SymbolAnalysis:
    """One symbol's shared work in a cycle: the analyst's answer, what the decision log keeps of the features,
    the features themselves and the decision-log id (0 until stored).

    Only a backtest's precomputed analyses (AnalysesAhead) leave `features` out: the engine reads them only to size
    an entry, which a hold never reaches; any other answer brings `load_features`, which `entry_features` calls
    the first time they are needed (most buy signals are skipped before: the symbol is already held).
    """

    symbol: str
    time: datetime
    last_price: Decimal
    regime: str
    confluence: float
    report: AnalystReport
    features: MarketFeatures | None
    analysis_id: int = 0
    load_features: Callable[[], MarketFeatures] | None = field(default=None, repr=False, compare=False)

    def entry_features(self) -> MarketFeatures | None:
        """The features, loaded now if they came separately."""
        if self.features is None and self.load_features is not None:
            self.features, self.load_features = self.load_features(), None
        return self.features

    @classmethod
    def of(cls, features: MarketFeatures, report: AnalystReport) -> SymbolAnalysis:
        return cls(features.symbol, features.time, features.last_price, features.regime.regime, features.confluence,
                   report, features)


class AnalysesAhead(Protocol):
    """Analyses computed before their cycle (a backtest's worker processes): the live path's numbers, sooner."""

    def covers(self, symbol: str, analyzer: str) -> bool: ...

    def take(self, symbol: str, now: datetime) -> SymbolAnalysis | None: ...


@dataclass(slots=True)
class CycleSummary:
    time: datetime
    analyses: int = 0
    entries: int = 0
    exits: int = 0
    rejections: dict[str, int] = field(default_factory=dict)


async def analyze_with(provider: SignalProvider, features: MarketFeatures) -> AnalystReport:
    """Asks an analyst; any failure becomes `hold` with the reason, never an exception into the loop."""
    try:
        detailed = getattr(provider, "analyze_detailed", None)
        if detailed is not None:
            report: AnalystReport = await detailed(features)
            return report
        return AnalystReport(signal=await provider.analyze(features), analyzer=provider.name)
    except Exception as e:
        log.exception("analyst %s failed on %s", provider.name, features.symbol)
        return AnalystReport(signal=Signal.hold(f"analyst error: {e}"), analyzer=provider.name, error=str(e))


class TradingBot:
    def __init__(
        self,
        uow: UowFactory,
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
    ) -> None:
        self.uow = uow
        self.exchanges = exchanges
        self.market = market
        self.analysts = analysts
        self.build_features = build_features
        self.risk_manager = risk_manager
        self.publish = publish
        self.clock = clock
        self.limits = limits
        self.settings = settings or BotSettings()
        self._rate_limit = timedelta(seconds=self.settings.user_rate_limit_s)
        self.metrics = metrics or Metrics()
        self.state = TradingState.ACTIVE
        self.ahead: AnalysesAhead | None = None  # a backtest's precomputed analyses
        # exits of one user's positions run one at a time: the engine's exit check and a manual close from the API
        # share the event loop, and the second must find the position already gone rather than close it again
        self._exit_locks: dict[int, asyncio.Lock] = {}

    # ----- the cycle -------------------------------------------------------------------------------------------
    async def run_cycle(self, now: datetime) -> CycleSummary:
        """One cycle: monitor exits first, then analyse each symbol once, then decide per user."""
        summary = CycleSummary(now)
        unreconciled = await self._reconcile(now)
        summary.exits += await self._check_oco_orders(now)
        if self.state != TradingState.ACTIVE:
            return summary  # REDUCING and HALTED open nothing; exits and protection above still run
        configs = [c for c in await self._get_active_trading_configs() if c.user_id not in unreconciled]
        analyses = await self._analyze_symbols(configs, now)
        summary.analyses = len(analyses)
        for config in configs:
            await self._process_user_trading(config, analyses, now, summary)
        return summary

    async def _get_active_trading_configs(self) -> list[TradingConfig]:
        async with self.uow() as uow:
            configs: list[TradingConfig] = await uow.configs.active()
            return configs

    async def _analyze_symbols(self, configs: Sequence[TradingConfig], now: datetime) -> dict[tuple[str, str], SymbolAnalysis]:
        """Market data, features and one analyst call per symbol (and analyst kind), shared by every user."""
        wanted = sorted({(symbol, c.analyzer) for c in configs for symbol in c.symbols if c.in_trading_hours(now.time())})
        features_by_symbol: dict[str, MarketFeatures | None] = {}
        results: dict[tuple[str, str], SymbolAnalysis] = {}
        ahead = self.ahead
        for symbol, analyzer in wanted:
            if ahead is not None and ahead.covers(symbol, analyzer):
                analysis = ahead.take(symbol, now)
            else:
                analysis = await self.analyse_symbol(symbol, analyzer, now, features_by_symbol)
            if analysis is not None:
                analysis.analysis_id = await self._store_analysis(analysis)
                results[(symbol, analyzer)] = analysis
        return results

    async def analyse_symbol(self, symbol: str, analyzer: str, now: datetime,
                             features_by_symbol: dict[str, MarketFeatures | None] | None = None) -> SymbolAnalysis | None:
        """Features and the analyst's answer for one symbol (None without market data); nothing is stored.
        `features_by_symbol` shares one cycle's features between analyst kinds."""
        shared = {} if features_by_symbol is None else features_by_symbol
        if symbol not in shared:
            shared[symbol] = await self._features(symbol, now)
        features = shared[symbol]
        if features is None:
            return None
        provider = self.analysts.get(analyzer) or self.analysts["rules"]
        return SymbolAnalysis.of(features, await analyze_with(provider, features))

    async def market_features(self, symbol: str, now: datetime) -> MarketFeatures:
        """The cycle's features of one symbol (market data errors propagate)."""
        snapshot = await self._fetch_market_snapshot(symbol)
        return self.build_features(symbol, now, snapshot[Timeframe.M5], snapshot[Timeframe.M15], snapshot[Timeframe.H1])

    async def _features(self, symbol: str, now: datetime) -> MarketFeatures | None:
        try:
            return await self.market_features(symbol, now)
        except (ExchangeError, ValueError) as e:
            log.warning("no market data for %s at %s: %s", symbol, now.isoformat(), e)
            return None

    async def _fetch_market_snapshot(self, symbol: str) -> dict[Timeframe, Sequence[Candle]]:
        return {tf: await self.market.get_klines(symbol, tf, limit) for tf, limit in CANDLES.items()}

    async def _store_analysis(self, analysis: SymbolAnalysis) -> int:
        report = analysis.report
        signal = report.signal
        record = AnalysisRecord(
            symbol=analysis.symbol, created_at=analysis.time, analyzer=report.analyzer, signal=signal.signal.value,
            confidence=signal.confidence, reasoning=signal.reasoning, regime=analysis.regime,
            confluence_score=_confluence_score(analysis.confluence), last_price=analysis.last_price,
            entry_price=signal.entry_price, stop_loss=signal.stop_loss, take_profit=signal.take_profit,
            model=report.model, prompt=report.prompt, prompt_version=report.prompt_version,
            prompt_hash=report.prompt_hash, raw_response=report.raw_response, latency_ms=report.latency_ms,
            input_tokens=report.input_tokens, output_tokens=report.output_tokens, cost_usd=report.cost_usd,
            fallback_used=report.fallback_used, error=report.error,
        )
        async with self.uow() as uow:
            analysis_id: int = await uow.analyses.add(record)
            await uow.commit()
        return analysis_id

    # ----- per user --------------------------------------------------------------------------------------------
    async def _process_user_trading(
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
                await self.publish(config.user_id, "error", now, {"symbol": symbol, "message": str(e)})

    async def _remaining_rate_limit(self, uow: Any, user_id: int, now: datetime) -> float:
        """Seconds until the user may be analysed again (0 when due)."""
        last = await uow.configs.last_analyzed_at(user_id)
        if last is None:
            return 0.0
        due = last + self._rate_limit
        # a cycle that runs a little early must not skip a whole interval
        return max(0.0, (due - now).total_seconds() - 1.0)

    async def _decide(self, config: TradingConfig, analysis: SymbolAnalysis, now: datetime, summary: CycleSummary) -> None:
        symbol, signal = analysis.symbol, analysis.report.signal
        async with self.uow() as uow:
            positions: list[PositionRecord] = await uow.positions.for_user(config.user_id)
        skip = self._skip_reason(config, symbol, signal, positions, now)
        if skip is not None:
            self.metrics.count_signal(signal.signal, Decision.SKIPPED)
            await self._record_decision(analysis.analysis_id, config.user_id, Decision.SKIPPED, [skip], now)
            return
        await self.publish(config.user_id, "analysis", now, {
            "symbol": symbol, "signal": signal.signal.value, "confidence": signal.confidence,
            "regime": analysis.regime, "confluence": round(analysis.confluence, 2),
        })
        features = analysis.entry_features()
        if features is None:
            raise RuntimeError(f"{symbol} at {now.isoformat()}: a {signal.signal.value} signal came without its features")
        context = await self._risk_context(config, symbol, positions, now)
        decision = self.risk_manager.validate_trade_signal(signal, features, context)
        if not decision.approved:
            self.metrics.count_signal(signal.signal, Decision.REJECTED)
            await self._reject(config.user_id, analysis, decision, now, summary)
            return
        trade = await self._execute_trade(config, symbol, decision, analysis, now)
        self.metrics.count_signal(signal.signal, "executed" if trade else "failed")
        if trade is not None:
            summary.entries += 1
            await self._record_decision(analysis.analysis_id, config.user_id, Decision.EXECUTED, [], now, trade.id)

    @staticmethod
    def _skip_reason(config: TradingConfig, symbol: str, signal: Signal, positions: Sequence[PositionRecord],
                     now: datetime) -> str | None:
        if not config.in_trading_hours(now.time()):
            return "outside trading hours"
        if signal.signal == SignalType.HOLD:
            return hold_reason(signal)
        if any(p.symbol == symbol for p in positions):
            return f"already holding {symbol}"
        if len(positions) >= config.max_open_positions:
            return f"at the open-position cap ({len(positions)}/{config.max_open_positions})"
        return None

    async def _risk_context(self, config: TradingConfig, symbol: str, positions: Sequence[PositionRecord],
                            now: datetime) -> UserRiskContext:
        exchange = await self.exchanges.for_user(config.user_id)
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        async with self.uow() as uow:
            entries_today = await uow.trades.entries_since(config.user_id, day_start)
            results = await uow.trades.recent_results(config.user_id, self.limits.win_rate_lookback_trades)
        balance = await exchange.get_account_balance(self.settings.quote_asset)
        return UserRiskContext(
            user_id=config.user_id, config=config, usdt_balance=balance.free,
            open_symbols=tuple(p.symbol for p in positions), entries_today=entries_today, recent_results=results,
            rules=await exchange.get_symbol_rules(symbol), cycle_time=now,
        )

    async def _reject(self, user_id: int, analysis: SymbolAnalysis, decision: RiskDecision, now: datetime,
                      summary: CycleSummary) -> None:
        for reason in decision.reasons:
            key = reason_key(reason)
            summary.rejections[key] = summary.rejections.get(key, 0) + 1
        await self._record_decision(analysis.analysis_id, user_id, Decision.REJECTED, list(decision.reasons), now)
        await self.publish(user_id, "signal_rejected", now, {
            "symbol": analysis.symbol, "signal": analysis.report.signal.signal.value,
            "confidence": analysis.report.signal.confidence, "reasons": list(decision.reasons),
        })

    async def _record_decision(self, analysis_id: int, user_id: int, decision: Decision, reasons: list[str],
                               now: datetime, trade_id: int | None = None) -> None:
        if log.isEnabledFor(logging.INFO):  # every symbol, every cycle: no joining for a level that is off
            log.info("user %s analysis %s: %s %s", user_id, analysis_id, decision, "; ".join(reasons))
        async with self.uow() as uow:
            await uow.analyses.add_decision(analysis_id, user_id, decision, reasons, now, trade_id)
            await uow.commit()

    # ----- entries ---------------------------------------------------------------------------------------------
    async def _execute_trade(self, config: TradingConfig, symbol: str, decision: RiskDecision,
                             analysis: SymbolAnalysis, now: datetime) -> TradeRecord | None:
        """Market entry, then the protective OCO sized to what was received; no unprotected position survives."""
        user_id = config.user_id
        exchange = await self.exchanges.for_user(user_id)
        client_id = f"trd{user_id}-{symbol}-{ms_from_utc(now)}"
        await self._write_order(OrderRecord(
            client_order_id=client_id, user_id=user_id, purpose="entry", symbol=symbol, side=Side.BUY.value,
            type="MARKET", quantity=decision.quantity, status=PENDING_SEND, price=decision.entry_price,
            stop_price=decision.stop_loss, take_profit=decision.take_profit,
            confidence=analysis.report.signal.confidence, analysis_id=analysis.analysis_id,
        ), now)
        order = await self._send_entry(exchange, symbol, decision.quantity, client_id, user_id, now)
        if order is None or order.executed_qty == 0:
            return None
        plan = EntryPlan(decision.entry_price, decision.stop_loss, decision.take_profit,
                         analysis.report.signal.confidence, analysis.analysis_id)
        trade = await self._book_entry(user_id, order, plan, now)
        await self._protect(exchange, trade, now)
        return trade

    async def _write_order(self, record: OrderRecord, now: datetime) -> None:
        async with self.uow() as uow:
            await uow.orders.add(record, now)
            await uow.commit()

    async def _mark_order(self, client_id: str, status: str, now: datetime, error: str | None = None,
                          trade_id: int | None = None, order: Order | None = None) -> None:
        async with self.uow() as uow:
            if order is not None:
                await uow.orders.record_exchange_state(client_id, order, now)
            await uow.orders.mark(client_id, order.status.value if order else status, now, error, trade_id)
            await uow.commit()

    async def _send_entry(self, exchange: ExchangeAdapter, symbol: str, quantity: Decimal, client_id: str,
                          user_id: int, now: datetime) -> Order | None:
        order: Order | None
        try:
            order = await exchange.place_market_order(symbol, Side.BUY, quantity, client_id)
        except OrderStatusUnknown as e:
            order = await self._find_order(exchange, symbol, client_id)
            if order is None:
                await self._mark_order(client_id, UNKNOWN, now, str(e))
                await self.publish(user_id, "error", now, {"symbol": symbol, "message": f"entry status unknown: {e}"})
                return None
        except (OrderRejected, TemporaryExchangeError) as e:
            await self._mark_order(client_id, OrderStatus.REJECTED.value, now, str(e))
            await self.publish(user_id, "error", now, {"symbol": symbol, "message": f"entry not placed: {e}"})
            return None
        await self._mark_order(client_id, order.status.value, now, order=order)
        self.metrics.orders_placed.labels(type="entry", outcome=order.status.value).inc()
        return order

    async def _find_order(self, exchange: ExchangeAdapter, symbol: str, client_id: str) -> Order | None:
        try:
            return await exchange.get_order(symbol, client_id)
        except (OrderNotFound, TemporaryExchangeError, OrderStatusUnknown):
            return None

    async def _book_entry(self, user_id: int, order: Order, plan: EntryPlan, now: datetime) -> TradeRecord:
        exchange = await self.exchanges.for_user(user_id)
        rules = await exchange.get_symbol_rules(order.symbol)
        fill = entry_fill(order, rules)
        stop, target = reanchor(fill.price, plan.entry_price, plan.stop_loss, plan.take_profit, rules)
        free_base = (await exchange.get_account_balance(rules.base_asset)).free
        async with self.uow() as uow:
            # what rounding to the step left behind last time rides along, so dust does not eat the profit
            sellable = min(fill.held + await uow.dust.get(user_id, order.symbol), free_base)
            quantity = rules.round_qty(sellable)
            await uow.dust.set(user_id, order.symbol, sellable - quantity)
            trade: TradeRecord = await uow.trades.add(TradeRecord(
                id=0, user_id=user_id, symbol=order.symbol, side=Side.BUY.value, status=TradeStatus.FILLED,
                amount=fill.amount, price=fill.price, stop_loss=stop, take_profit=target,
                ai_signal_confidence=plan.confidence, entry_client_order_id=order.client_order_id,
                entry_fee=fill.fee_usdt, fees=fill.fee_usdt, executed_at=now, analysis_id=plan.analysis_id,
            ))
            await uow.positions.add(PositionRecord(
                trade.id, user_id, order.symbol, quantity, fill.price, stop, target, None, now,
            ))
            await uow.orders.mark(order.client_order_id, order.status.value, now, trade_id=trade.id)
            await uow.commit()
        trades_log.info("ENTRY user=%s %s qty=%s @ %s stop=%s target=%s", user_id, order.symbol,
                        fill.amount, fill.price, stop, target)
        return trade

    async def _protect(self, exchange: ExchangeAdapter, trade: TradeRecord, now: datetime) -> bool:
        """Place the OCO (with retries); if it cannot be placed, sell at once: EMERGENCY."""
        async with self.uow() as uow:
            position: PositionRecord | None = await uow.positions.get(trade.id)
        if position is None:
            return False
        rules = await exchange.get_symbol_rules(trade.symbol)
        async with self.uow() as uow:
            earlier = len(await uow.orders.for_trade(trade.id, "protect"))
        last_error = ""
        for attempt in range(earlier + 1, earlier + self.settings.oco_place_retries + 1):
            list_id = f"{trade.entry_client_order_id}-p{attempt}"
            oco = await self._send_oco(exchange, position, list_id, rules, now)
            if isinstance(oco, OcoOrder):
                await self._protected(trade, position, oco, now)
                return True
            last_error = oco
        await self._emergency_exit(exchange, trade, position, last_error, now)
        return False

    async def _send_oco(self, exchange: ExchangeAdapter, position: PositionRecord, list_id: str, rules: SymbolRules,
                        now: datetime) -> OcoOrder | str:
        limit = stop_limit_price(position.stop_loss, self.limits.stop_limit_gap_pct, rules)
        await self._write_order(OrderRecord(
            client_order_id=list_id, user_id=position.user_id, purpose="protect", symbol=position.symbol,
            side=Side.SELL.value, type="OCO", quantity=position.amount, status=PENDING_SEND,
            price=position.take_profit, stop_price=position.stop_loss, trade_id=position.trade_id,
        ), now)
        try:
            oco = await exchange.place_oco_order(
                position.symbol, position.amount, position.take_profit, position.stop_loss, limit, list_id
            )
        except OrderStatusUnknown:
            try:
                oco = await exchange.get_oco_order_status(position.symbol, list_id)
            except ExchangeError as e:
                await self._mark_order(list_id, UNKNOWN, now, str(e))
                return str(e)
        except ExchangeError as e:
            await self._mark_order(list_id, OrderStatus.REJECTED.value, now, str(e))
            return str(e)
        await self._mark_order(list_id, oco.list_status.value, now)
        self.metrics.orders_placed.labels(type="oco", outcome=oco.list_status.value).inc()
        return oco

    async def _protected(self, trade: TradeRecord, position: PositionRecord, oco: OcoOrder, now: datetime) -> None:
        async with self.uow() as uow:
            await uow.positions.set_protection(trade.id, oco.list_client_order_id, position.stop_loss,
                                               position.take_profit)
            await uow.commit()
        await self.publish(trade.user_id, "trade_executed", now, {
            "trade_id": trade.id, "symbol": trade.symbol, "amount": str(trade.amount), "price": str(trade.price),
            "stop_loss": str(position.stop_loss), "take_profit": str(position.take_profit),
            "oco_order_id": oco.list_client_order_id,
        })

    async def _emergency_exit(self, exchange: ExchangeAdapter, trade: TradeRecord, position: PositionRecord,
                              error: str, now: datetime) -> None:
        log.error("no protection for trade %s (%s): selling at market", trade.id, error)
        closed = await self._sell_and_book(exchange, trade, position, ExitReason.EMERGENCY, now)
        await self.publish(trade.user_id, "emergency_exit", now, {
            "trade_id": trade.id, "symbol": trade.symbol, "reason": f"protection could not be placed: {error}",
            "exit_price": str(closed.exit_price) if closed else None,
        })

    # ----- exits -----------------------------------------------------------------------------------------------
    async def _check_oco_orders(self, now: datetime) -> int:
        """Book TP/SL exits, finish stops the market gapped through, and force-close stale positions."""
        async with self.uow() as uow:
            positions: list[PositionRecord] = await uow.positions.all()
            timeouts = {user_id: (await uow.configs.get(user_id)).position_timeout_minutes
                        for user_id in {p.user_id for p in positions}}
        closed = 0
        for listed in positions:
            async with self._exit_lock(listed.user_id):
                position = await self._open_position(listed.trade_id)
                if position is None:
                    continue  # closed meanwhile (a manual close)
                closed += await self._checked(position, timeouts[position.user_id], now)
        return closed

    def _exit_lock(self, user_id: int) -> asyncio.Lock:
        return self._exit_locks.setdefault(user_id, asyncio.Lock())

    async def _open_position(self, trade_id: int) -> PositionRecord | None:
        async with self.uow() as uow:
            position: PositionRecord | None = await uow.positions.get(trade_id)
        return position

    async def _checked(self, position: PositionRecord, timeout_minutes: int, now: datetime) -> int:
        """_check_position with its errors logged and reported; 1 when the position was closed."""
        try:
            return int(await self._check_position(position, timeout_minutes, now))
        except TemporaryExchangeError as e:
            log.info("position %s not checked this cycle: %s", position.trade_id, e)
        except (ExchangeError, ConfigurationError) as e:
            log.error("position %s of user %s: %s", position.trade_id, position.user_id, e)
            await self.publish(position.user_id, "error", now, {"trade_id": position.trade_id, "message": str(e)})
        return 0

    async def _check_position(self, position: PositionRecord, timeout_minutes: int, now: datetime) -> bool:
        if position.oco_order_id is None:
            return False  # reconciliation protects it
        exchange = await self.exchanges.for_user(position.user_id)
        oco = await exchange.get_oco_order_status(position.symbol, position.oco_order_id)
        filled = oco.filled_leg
        if filled is not None:
            reason = ExitReason.TAKE_PROFIT if filled is oco.take_profit_leg else ExitReason.STOP_LOSS
            await self._book_exit(position, filled, reason, now)
            return True
        if not oco.is_open:
            await self._finish_dead_protection(exchange, position, oco, now)
            return True
        if now - position.opened_at >= timedelta(minutes=timeout_minutes):
            await self._force_close_stale_position(exchange, position, now)
            return True
        return False

    async def _finish_dead_protection(self, exchange: ExchangeAdapter, position: PositionRecord, oco: OcoOrder,
                                      now: datetime) -> None:
        """The list ended without a filled leg: a stop gapped through (leg still resting) or it was cancelled."""
        stop_leg = oco.stop_loss_leg
        if stop_leg.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
            with contextlib.suppress(OrderNotFound):
                await exchange.cancel_order(position.symbol, stop_leg.client_order_id)
            await self._close_position(exchange, position, ExitReason.STOP_LOSS, now)
            return
        await self._close_position(exchange, position, ExitReason.EMERGENCY, now)

    async def _force_close_stale_position(self, exchange: ExchangeAdapter, position: PositionRecord,
                                          now: datetime) -> None:
        await self._close_position(exchange, position, ExitReason.TIMEOUT, now)

    async def close_trade(self, user_id: int, trade_id: int, reason: ExitReason) -> TradeRecord:
        """The manual close (and any other close path): cancel the OCO, sell at market, book it."""
        async with self._exit_lock(user_id):
            return await self._close_trade(user_id, trade_id, reason)

    async def _close_trade(self, user_id: int, trade_id: int, reason: ExitReason) -> TradeRecord:
        async with self.uow() as uow:
            trade: TradeRecord | None = await uow.trades.get(user_id, trade_id)
            position: PositionRecord | None = await uow.positions.get(trade_id)
        if trade is None or trade.status != TradeStatus.FILLED or position is None:
            raise RuleViolation(f"trade {trade_id} is not open")
        exchange = await self.exchanges.for_user(user_id)
        closed = await self._close_position(exchange, position, reason, self.clock.now())
        if closed is None:
            raise RuleViolation(f"trade {trade_id} could not be closed; see the event log")
        return closed

    async def _close_position(self, exchange: ExchangeAdapter, position: PositionRecord, reason: ExitReason,
                              now: datetime) -> TradeRecord | None:
        if position.oco_order_id is not None:
            oco = await self._cancel_protection(exchange, position)
            if oco is not None and oco.filled_leg is not None:
                leg = oco.filled_leg
                exit_reason = ExitReason.TAKE_PROFIT if leg is oco.take_profit_leg else ExitReason.STOP_LOSS
                return await self._book_exit(position, leg, exit_reason, now)
        async with self.uow() as uow:
            trade: TradeRecord | None = await uow.trades.get(position.user_id, position.trade_id)
        if trade is None:
            return None
        return await self._sell_and_book(exchange, trade, position, reason, now)

    async def _cancel_protection(self, exchange: ExchangeAdapter, position: PositionRecord) -> OcoOrder | None:
        assert position.oco_order_id is not None
        oco = await exchange.get_oco_order_status(position.symbol, position.oco_order_id)
        if oco.is_open:
            try:
                oco = await exchange.cancel_oco_order(position.symbol, position.oco_order_id)
            except OrderNotFound:
                oco = await exchange.get_oco_order_status(position.symbol, position.oco_order_id)
        return oco

    async def _sell_and_book(self, exchange: ExchangeAdapter, trade: TradeRecord, position: PositionRecord,
                             reason: ExitReason, now: datetime) -> TradeRecord | None:
        client_id = f"{trade.entry_client_order_id}-x"
        async with self.uow() as uow:
            existing = await uow.orders.get(client_id)
        if existing is not None:
            # an earlier exit may have executed with its answer lost: look before sending again, since Binance
            # accepts a reused client id once the first order is final, and that would sell twice
            try:
                earlier = await exchange.get_order(trade.symbol, client_id)
            except OrderNotFound:
                earlier = None
            except (TemporaryExchangeError, OrderStatusUnknown):
                return None
            if earlier is not None and earlier.executed_qty > 0:
                await self._mark_order(client_id, earlier.status.value, now, order=earlier)
                return await self._book_exit(position, earlier, reason, now)
        else:
            await self._write_order(OrderRecord(
                client_order_id=client_id, user_id=trade.user_id, purpose="exit", symbol=trade.symbol,
                side=Side.SELL.value, type="MARKET", quantity=position.amount, status=PENDING_SEND, trade_id=trade.id,
            ), now)
        try:
            order = await exchange.place_market_order(trade.symbol, Side.SELL, position.amount, client_id)
        except OrderStatusUnknown:
            found = await self._find_order(exchange, trade.symbol, client_id)
            if found is None:
                return None
            order = found
        except ExchangeError as e:
            await self._mark_order(client_id, OrderStatus.REJECTED.value, now, str(e))
            await self.publish(trade.user_id, "error", now, {"trade_id": trade.id, "message": f"exit failed: {e}"})
            return None
        await self._mark_order(client_id, order.status.value, now, order=order)
        self.metrics.orders_placed.labels(type="exit", outcome=order.status.value).inc()
        return await self._book_exit(position, order, reason, now)

    async def _book_exit(self, position: PositionRecord, order: Order, reason: ExitReason,
                         now: datetime) -> TradeRecord:
        exchange = await self.exchanges.for_user(position.user_id)
        rules = await exchange.get_symbol_rules(position.symbol)
        fill = exit_fill(order, rules)
        async with self.uow() as uow:
            trade: TradeRecord = await uow.trades.get(position.user_id, position.trade_id)
            entry_quote = trade.amount * trade.price
            profit = net_profit(entry_quote, fill)
            closed_at = order.transact_time or now
            closed: TradeRecord = await uow.trades.close(
                trade.id, fill.price, reason, fill.fee_usdt, profit, profit_pct(profit, entry_quote), closed_at,
            )
            await uow.positions.remove(trade.id)
            await uow.portfolios.record_close(trade.user_id, profit, closed.fees, now)
            await uow.commit()
        trades_log.info("EXIT user=%s %s %s @ %s pnl=%s", trade.user_id, trade.symbol, reason.value, fill.price, profit)
        await self.publish(trade.user_id, "position_closed", now, {
            "trade_id": trade.id, "symbol": trade.symbol, "exit_reason": reason.value, "exit_price": str(fill.price),
            "profit_loss": str(profit),
        })
        return closed

    # ----- reconciliation --------------------------------------------------------------------------------------
    async def _reconcile(self, now: datetime) -> set[int]:
        """Finish what a crash interrupted; returns the users whose state is still unknown (they do not trade)."""
        async with self.uow() as uow:
            pending: list[OrderRecord] = await uow.orders.unresolved([PENDING_SEND, UNKNOWN], "entry")
        unresolved = set()
        for order in pending:
            try:
                resolved = await self._resolve_entry(order, now)
            except (ExchangeError, ConfigurationError) as e:
                log.error("entry %s of user %s not reconciled: %s", order.client_order_id, order.user_id, e)
                resolved = False
            if not resolved:
                unresolved.add(order.user_id)
        async with self.uow() as uow:
            positions: list[PositionRecord] = await uow.positions.all()
        for position in positions:
            if position.oco_order_id is None and position.user_id not in unresolved:
                try:
                    await self._reprotect(position, now)
                except (ExchangeError, ConfigurationError) as e:
                    log.error("position %s not protected yet: %s", position.trade_id, e)
                    unresolved.add(position.user_id)
        for user_id in sorted({p.user_id for p in positions} - unresolved):
            own = {p.oco_order_id for p in positions if p.user_id == user_id}
            try:
                await self._adopt_strangers(user_id, own, now)
            except (ExchangeError, ConfigurationError) as e:
                log.error("user %s: open order lists not checked: %s", user_id, e)
        return unresolved

    async def _adopt_strangers(self, user_id: int, own: set[str | None], now: datetime) -> None:
        """Order lists on the exchange that the bot has no row for: recorded (adopted) and reported, never touched.
        `own` are the lists protecting the user's positions (their rows are written before they are placed)."""
        exchange = await self.exchanges.for_user(user_id)
        try:
            open_lists = await exchange.get_open_oco_orders()
        except TemporaryExchangeError:
            return
        for oco in (o for o in open_lists if o.list_client_order_id not in own):
            async with self.uow() as uow:
                known = await uow.orders.get(oco.list_client_order_id)
            if known is not None:
                continue
            leg = oco.stop_loss_leg
            await self._write_order(OrderRecord(
                client_order_id=oco.list_client_order_id, user_id=user_id, purpose="adopted", symbol=oco.symbol,
                side=leg.side.value, type="OCO", quantity=leg.orig_qty, status=oco.list_status.value,
                price=oco.take_profit_leg.price, stop_price=leg.stop_price,
            ), now)
            log.warning("user %s: adopted order list %s that the bot did not place", user_id, oco.list_client_order_id)
            await self.publish(user_id, "error", now, {
                "symbol": oco.symbol, "message": f"found order list {oco.list_client_order_id} on the exchange that "
                "TRD Bot did not place; it is recorded and left alone",
            })

    async def _resolve_entry(self, row: OrderRecord, now: datetime) -> bool:
        """An entry sent (or maybe sent) before a crash: book and protect it if it filled, drop it if it never arrived."""
        exchange = await self.exchanges.for_user(row.user_id)
        try:
            order = await exchange.get_order(row.symbol, row.client_order_id)
        except OrderNotFound:
            await self._mark_order(row.client_order_id, OrderStatus.REJECTED.value, now, "never reached the exchange")
            return True
        except (TemporaryExchangeError, OrderStatusUnknown):
            return False
        await self._mark_order(row.client_order_id, order.status.value, now, order=order)
        async with self.uow() as uow:
            booked = await uow.trades.by_entry(row.client_order_id)
        if order.executed_qty == 0 or booked is not None or row.stop_price is None or row.take_profit is None:
            return True
        plan = EntryPlan(row.price or order.avg_price, row.stop_price, row.take_profit, row.confidence or 0,
                         row.analysis_id)
        trade = await self._book_entry(row.user_id, order, plan, order.transact_time or now)
        log.warning("adopted entry %s found filled on the exchange after a restart", row.client_order_id)
        await self._protect(exchange, trade, now)
        return True

    async def _reprotect(self, position: PositionRecord, now: datetime) -> None:
        exchange = await self.exchanges.for_user(position.user_id)
        async with self.uow() as uow:
            trade: TradeRecord | None = await uow.trades.get(position.user_id, position.trade_id)
            attempts = await uow.orders.with_status(position.user_id, [PENDING_SEND, UNKNOWN, ListStatus.EXECUTING.value],
                                                     "protect")
        if trade is None:
            return
        for attempt in (a for a in attempts if a.trade_id == trade.id):
            try:
                oco = await exchange.get_oco_order_status(position.symbol, attempt.client_order_id)
            except (OrderNotFound, TemporaryExchangeError):
                await self._mark_order(attempt.client_order_id, OrderStatus.REJECTED.value, now, "not on the exchange")
                continue
            if oco.is_open:
                await self._protected(trade, position, oco, now)
                return
        log.warning("trade %s had no protection after a restart: placing it now", trade.id)
        await self._protect(exchange, trade, now)


class TradingLoop:
    """Calls `run_cycle` every interval on the injected clock until stopped."""

    def __init__(self, bot: TradingBot, clock: Clock, interval_s: int,
                 observe: Callable[[float], None] | None = None) -> None:
        self.bot, self.clock, self.interval_s = bot, clock, interval_s
        self.observe = observe
        self.next_cycle_at: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    def _aligned(self, now: datetime) -> datetime:
        """Cycles run on interval boundaries (12:00, 12:05, ...) so every cycle sees freshly closed candles."""
        step = self.interval_s * 1000
        return utc_from_ms((ms_from_utc(now) // step + 1) * step)

    async def trading_loop(self) -> None:
        while True:
            now = self.clock.now()
            self.next_cycle_at = self._aligned(now)
            await self.clock.sleep((self.next_cycle_at - now).total_seconds())
            started = asyncio.get_running_loop().time()
            try:
                summary = await self.bot.run_cycle(self.next_cycle_at)
            except Exception:  # one bad cycle must not stop the engine
                log.exception("cycle at %s failed", self.next_cycle_at.isoformat())
                continue
            elapsed = asyncio.get_running_loop().time() - started
            metrics_log.info("cycle=%s seconds=%.3f analyses=%d entries=%d exits=%d rejections=%s",
                             summary.time.isoformat(), elapsed, summary.analyses, summary.entries, summary.exits,
                             dict(sorted(summary.rejections.items())))
            if self.observe is not None:
                self.observe(elapsed)

    def start(self) -> None:
        self._task = asyncio.create_task(self.trading_loop(), name="trading-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
