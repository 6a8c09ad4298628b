"""The trading engine: one decision cycle for every active user, the same on the wall and the simulated clock."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from app.domain.books import Books, EngineBooks
from app.domain.clock import Clock, ms_from_utc, utc_from_ms
from app.domain.errors import (
    ConfigurationError,
    ExchangeError,
    OrderNotFound,
    OrderRejected,
    OrderStatusUnknown,
    RateLimited,
    RuleViolation,
    TemporaryExchangeError,
)
from app.domain.ports import ExchangeAdapter, SignalProvider
from app.domain.records import AnalysisRecord, OrderRecord, PositionRecord, Purpose, TradeRecord
from app.domain.risk import RiskLimits, TradingConfig, UserRiskContext
from app.domain.values import (
    ZERO,
    AnalystReport,
    Candle,
    Decision,
    ExitReason,
    ListStatus,
    MarketFeatures,
    OcoOrder,
    Order,
    OrderStatus,
    OrderType,
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
from app.services.binance_protocol import oco_leg_client_ids
from app.services.bookkeeping import (
    entry_fill,
    net_profit,
    profit_pct,
    reanchor,
    recorded_exit_fill,
    stop_limit_price,
)
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


UowFactory = Books  # the name the container and backtest import
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
    exit_attempts: int = 3  # market sells per exit and cycle (a partly filled sell is followed by one for the rest)
    max_order_wait_s: float = 120.0  # how long protection and exits wait out rate limits within one cycle
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

    async def _remaining_rate_limit(self, uow: EngineBooks, user_id: int, now: datetime) -> float:
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
        """Market entry, then the protective OCO sized to what was received; no unprotected position survives.

        The order row is written before the order goes out, and booking and protection are the same steps that
        reconciliation runs: whatever this cycle could not finish (a lost answer, a failed read, a crash) the next
        cycle finishes from what the exchange says.
        """
        user_id = config.user_id
        exchange = await self.exchanges.for_user(user_id)
        row = OrderRecord(
            client_order_id=f"trd{user_id}-{symbol}-{ms_from_utc(now)}", user_id=user_id, purpose=Purpose.ENTRY,
            symbol=symbol, side=Side.BUY.value, type="MARKET", quantity=decision.quantity, status=PENDING_SEND,
            price=decision.entry_price, stop_price=decision.stop_loss, take_profit=decision.take_profit,
            confidence=analysis.report.signal.confidence, analysis_id=analysis.analysis_id, created_at=now,
        )
        await self._write_order(row, now)
        order = await self._send_entry(exchange, symbol, decision.quantity, row.client_order_id, user_id, now)
        if order is None or order.executed_qty == 0:
            return None
        return await self._finish_entry(exchange, row, order, now)

    async def _finish_entry(self, exchange: ExchangeAdapter, row: OrderRecord, order: Order,
                            now: datetime) -> TradeRecord:
        """Book a filled entry as its trade and position, then protect it. The trade's time is the bot's own: when
        the order row was written."""
        if row.stop_price is None or row.take_profit is None:
            raise ConfigurationError(f"entry {row.client_order_id} has no stop or target on its row")
        plan = EntryPlan(row.price or order.avg_price, row.stop_price, row.take_profit, row.confidence or 0,
                         row.analysis_id)
        trade = await self._book_entry(row.user_id, order, plan, row.created_at or now, now)
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

    async def _book_entry(self, user_id: int, order: Order, plan: EntryPlan, executed_at: datetime,
                          now: datetime) -> TradeRecord:
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
                entry_fee=fill.fee_usdt, fees=fill.fee_usdt, executed_at=executed_at, analysis_id=plan.analysis_id,
            ))
            await uow.positions.add(PositionRecord(
                trade.id, user_id, order.symbol, quantity, fill.price, stop, target, None, executed_at,
            ))
            await uow.orders.mark(order.client_order_id, order.status.value, now, trade_id=trade.id)
            await uow.commit()
        trades_log.info("ENTRY user=%s %s qty=%s @ %s stop=%s target=%s", user_id, order.symbol,
                        fill.amount, fill.price, stop, target)
        return trade

    # ----- protection ------------------------------------------------------------------------------------------
    async def _protect(self, exchange: ExchangeAdapter, trade: TradeRecord, now: datetime) -> bool:
        """Place the OCO (with retries, waiting out a rate limit); if it cannot be placed, sell at once: EMERGENCY."""
        position = await self._open_position(trade.id)
        if position is None or position.closing_reason is not None:
            return False
        rules = await exchange.get_symbol_rules(trade.symbol)
        async with self.uow() as uow:
            attempt = len(await uow.orders.for_trade(trade.id, Purpose.PROTECT))
        failures, waited_s, last_error = 0, 0.0, ""
        while failures < self.settings.oco_place_retries:
            attempt += 1
            try:
                oco = await self._send_oco(exchange, position, f"{trade.entry_client_order_id}-p{attempt}", rules, now)
            except RateLimited as e:  # nothing was sent: wait it out when the budget allows, then try again
                last_error = str(e)
                if not await self._wait_out(e, waited_s):
                    break
                waited_s += e.retry_after_s
                continue
            if isinstance(oco, OcoOrder):
                await self._protected(trade, position, oco, now)
                return True
            failures, last_error = failures + 1, oco
        await self._emergency_exit(exchange, trade, position, last_error, now)
        return False

    async def _wait_out(self, limit: RateLimited, waited_s: float) -> bool:
        """Sleep through a rate limit if the order's waiting budget allows; False when it does not."""
        if waited_s + limit.retry_after_s > self.settings.max_order_wait_s:
            return False
        log.warning("rate limited: waiting %.0f s before the next order", limit.retry_after_s)
        await self.clock.sleep(limit.retry_after_s)
        return True

    async def _send_oco(self, exchange: ExchangeAdapter, position: PositionRecord, list_id: str, rules: SymbolRules,
                        now: datetime) -> OcoOrder | str:
        """The OCO, or why it failed. A rate limit (nothing sent) is raised for the caller to wait out."""
        limit = stop_limit_price(position.stop_loss, self.limits.stop_limit_gap_pct, rules)
        await self._write_order(OrderRecord(
            client_order_id=list_id, user_id=position.user_id, purpose=Purpose.PROTECT, symbol=position.symbol,
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
        except RateLimited as e:
            await self._mark_order(list_id, OrderStatus.REJECTED.value, now, str(e))
            raise
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
        closed = await self._close_position(exchange, position, ExitReason.EMERGENCY, now)
        await self.publish(trade.user_id, "emergency_exit", now, {
            "trade_id": trade.id, "symbol": trade.symbol, "reason": f"protection could not be placed: {error}",
            "exit_price": str(closed.exit_price) if closed else None,
        })

    # ----- exits -----------------------------------------------------------------------------------------------
    async def _check_oco_orders(self, now: datetime) -> int:
        """Book TP/SL exits, finish exits under way, re-protect lost lists and force-close stale positions."""
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
        exchange = await self.exchanges.for_user(position.user_id)
        if position.closing_reason is not None:  # an exit under way: finish it
            return await self._finish_exit(exchange, position, now) is not None
        if position.oco_order_id is None:
            return False  # reconciliation protects it
        try:
            oco = await exchange.get_oco_order_status(position.symbol, position.oco_order_id)
        except OrderNotFound:
            return await self._protection_gone(exchange, position, timeout_minutes, now)
        reason = _exit_reason(oco)
        if reason is None and now - position.opened_at >= timedelta(minutes=timeout_minutes):
            reason = ExitReason.TIMEOUT
        if reason is None:
            return False
        return await self._close_position(exchange, position, reason, now) is not None

    async def _protection_gone(self, exchange: ExchangeAdapter, position: PositionRecord, timeout_minutes: int,
                               now: datetime) -> bool:
        """The exchange knows no list by the position's id (-2013). Its legs tell what happened: a filled leg is
        the exit; a live leg means the answer was wrong (nothing to do); otherwise the list is gone: protect again,
        or close a position that is due."""
        assert position.oco_order_id is not None
        legs = await self._legs_of(exchange, position.symbol, position.oco_order_id)
        if any(not leg.status.is_final for leg in legs):
            log.warning("order list %s not found, but its legs are live", position.oco_order_id)
            return False
        filled = next((leg for leg in legs if leg.status == OrderStatus.FILLED), None)
        if filled is not None or now - position.opened_at >= timedelta(minutes=timeout_minutes):
            reason = ExitReason.TIMEOUT if filled is None else _leg_reason(filled)
            return await self._close_position(exchange, position, reason, now) is not None
        await self._unlink(position, now, "gone from the exchange")
        trade = await self._trade_of(position)
        if trade is not None and await self._protect(exchange, trade, now):
            await self._report_repair(position, "re-protected", now, f"order list {position.oco_order_id} was gone")
        return False

    async def _legs_of(self, exchange: ExchangeAdapter, symbol: str, list_id: str) -> list[Order]:
        """The legs of an order list looked up one by one (those the exchange still knows)."""
        legs = []
        for leg_id in oco_leg_client_ids(list_id):
            with contextlib.suppress(OrderNotFound):
                legs.append(await exchange.get_order(symbol, leg_id))
        return legs

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
            raise RuleViolation(f"trade {trade_id} is being closed but not yet done (the next cycle finishes it); "
                                "see the event log")
        return closed

    async def _close_position(self, exchange: ExchangeAdapter, position: PositionRecord, reason: ExitReason,
                              now: datetime) -> TradeRecord | None:
        """Start the exit (stored first, so that any interruption is finished by the next cycle), then finish it."""
        if position.closing_reason is None:
            async with self.uow() as uow:
                await uow.positions.mark_closing(position.trade_id, reason)
                await uow.commit()
            position = dataclasses.replace(position, closing_reason=reason)
        return await self._finish_exit(exchange, position, now)

    async def _finish_exit(self, exchange: ExchangeAdapter, position: PositionRecord,
                           now: datetime) -> TradeRecord | None:
        """Take the protection down, sell what the position still holds, and book the close from every exit fill
        the exchange confirmed; None while coins remain to be sold (the next cycle goes on)."""
        reason = position.closing_reason or ExitReason.MANUAL
        if position.oco_order_id is not None:
            reason = await self._take_down_protection(exchange, position, now) or reason
            position = dataclasses.replace(position, oco_order_id=None)
        rules = await exchange.get_symbol_rules(position.symbol)
        waited_s = 0.0
        for _ in range(self.settings.exit_attempts):
            fills = await self._settled_exits(exchange, position, now)
            if fills is None:
                return None
            quantity = _left_to_sell(position, fills, rules)
            if quantity == 0:
                return await self._book_close(position, fills, reason, rules, now)
            try:
                if not await self._send_exit(exchange, position, quantity, len(fills) + 1, now):
                    return None
            except RateLimited as e:
                if not await self._wait_out(e, waited_s):
                    return None
                waited_s += e.retry_after_s
        return None

    async def _take_down_protection(self, exchange: ExchangeAdapter, position: PositionRecord,
                                    now: datetime) -> ExitReason | None:
        """Cancel the position's list (or its resting legs), record what its legs sold, unlink it. The exit
        reason when a leg filled completely."""
        assert position.oco_order_id is not None
        list_id = position.oco_order_id
        try:
            oco = await exchange.get_oco_order_status(position.symbol, list_id)
            if oco.is_open:
                with contextlib.suppress(OrderNotFound):
                    oco = await exchange.cancel_oco_order(position.symbol, list_id)
            legs = list(oco.legs)
        except OrderNotFound:
            legs = await self._legs_of(exchange, position.symbol, list_id)
        for i, leg in enumerate(legs):
            if not leg.status.is_final:  # a stop-limit the market gapped through, or a list that did not cancel
                with contextlib.suppress(OrderNotFound):
                    legs[i] = await exchange.cancel_order(position.symbol, leg.client_order_id)
        if any(not leg.status.is_final for leg in legs):
            raise TemporaryExchangeError(f"order list {list_id} could not be cancelled yet")
        await self._record_leg_fills(position, legs, now)
        await self._unlink(position, now)
        filled = next((leg for leg in legs if leg.status == OrderStatus.FILLED), None)
        return _leg_reason(filled) if filled is not None else None

    async def _record_leg_fills(self, position: PositionRecord, legs: Sequence[Order], now: datetime) -> None:
        """Legs that sold something become exit rows of the trade: the close is booked from its exit rows."""
        async with self.uow() as uow:
            for leg in (leg for leg in legs if leg.executed_qty > 0):
                if await uow.orders.get(leg.client_order_id) is None:
                    await uow.orders.add(OrderRecord(
                        client_order_id=leg.client_order_id, user_id=position.user_id, purpose=Purpose.EXIT,
                        symbol=position.symbol, side=leg.side.value, type=leg.type.value, quantity=leg.orig_qty,
                        status=leg.status.value, trade_id=position.trade_id, price=leg.price,
                        stop_price=leg.stop_price,
                    ), now)
                await uow.orders.record_exchange_state(leg.client_order_id, leg, now)
            await uow.commit()

    async def _unlink(self, position: PositionRecord, now: datetime, why: str | None = None) -> None:
        """The position's list is done with: its row takes the final state, the position no longer points at it."""
        assert position.oco_order_id is not None
        async with self.uow() as uow:
            if await uow.orders.get(position.oco_order_id) is not None:
                await uow.orders.mark(position.oco_order_id, ListStatus.ALL_DONE.value, now, why)
            await uow.positions.set_protection(position.trade_id, None, position.stop_loss, position.take_profit)
            await uow.commit()

    async def _settled_exits(self, exchange: ExchangeAdapter, position: PositionRecord,
                             now: datetime) -> list[OrderRecord] | None:
        """The trade's exit rows, each in its final state on the exchange; None while one is still unknown."""
        async with self.uow() as uow:
            rows: list[OrderRecord] = await uow.orders.for_trade(position.trade_id, Purpose.EXIT)
        settled = []
        for row in rows:
            if row.status not in (PENDING_SEND, UNKNOWN) and OrderStatus(row.status).is_final:
                settled.append(row)
                continue
            try:
                order = await exchange.get_order(row.symbol, row.client_order_id)
            except OrderNotFound:
                if row.status not in (PENDING_SEND, UNKNOWN):
                    return None  # it was on the exchange: an answer that forgets it is not to be trusted
                await self._mark_order(row.client_order_id, OrderStatus.REJECTED.value, now, "never reached the exchange")
                continue
            except (TemporaryExchangeError, OrderStatusUnknown):
                return None
            await self._mark_order(row.client_order_id, order.status.value, now, order=order)
            if not order.status.is_final:
                return None
            settled.append(dataclasses.replace(row, status=order.status.value, executed_qty=order.executed_qty,
                                               cumulative_quote_qty=order.cumulative_quote_qty,
                                               commission=sum((f.commission for f in order.fills), ZERO),
                                               commission_asset=order.fills[0].commission_asset if order.fills else None))
        return settled

    async def _send_exit(self, exchange: ExchangeAdapter, position: PositionRecord, quantity: Decimal, number: int,
                         now: datetime) -> bool:
        """One market SELL of the position's coins; False when it failed (the next cycle tries again). A rate limit
        (nothing sent) is raised for the caller to wait out."""
        trade = await self._trade_of(position)
        assert trade is not None
        client_id = f"{trade.entry_client_order_id}-x{number}"
        await self._write_order(OrderRecord(
            client_order_id=client_id, user_id=trade.user_id, purpose=Purpose.EXIT, symbol=trade.symbol,
            side=Side.SELL.value, type="MARKET", quantity=quantity, status=PENDING_SEND, trade_id=trade.id,
        ), now)
        try:
            order = await exchange.place_market_order(trade.symbol, Side.SELL, quantity, client_id)
        except OrderStatusUnknown as e:
            await self._mark_order(client_id, UNKNOWN, now, str(e))
            return True  # settled by the next look at the exit rows
        except RateLimited as e:
            await self._mark_order(client_id, OrderStatus.REJECTED.value, now, str(e))
            raise
        except ExchangeError as e:
            await self._mark_order(client_id, OrderStatus.REJECTED.value, now, str(e))
            await self.publish(trade.user_id, "error", now, {"trade_id": trade.id, "message": f"exit failed: {e}"})
            return False
        await self._mark_order(client_id, order.status.value, now, order=order)
        self.metrics.orders_placed.labels(type="exit", outcome=order.status.value).inc()
        if number > 1 or order.executed_qty < quantity:
            await self._report_repair(position, "sold remainder of partial exit" if number > 1 else "partial exit",
                                      now, f"{order.executed_qty} of {quantity} sold by {client_id}")
        return True

    async def _trade_of(self, position: PositionRecord) -> TradeRecord | None:
        async with self.uow() as uow:
            trade: TradeRecord | None = await uow.trades.get(position.user_id, position.trade_id)
        return trade

    async def _book_close(self, position: PositionRecord, fills: Sequence[OrderRecord], reason: ExitReason,
                          rules: SymbolRules, now: datetime) -> TradeRecord | None:
        """The close as the exchange confirmed it: every exit fill of the trade together. What rounding leaves
        unsold rides along with the next entry of the symbol (dust)."""
        sold = [row for row in fills if row.executed_qty > 0]
        if not sold:
            log.error("trade %s: nothing sold and %s %s below what the exchange accepts", position.trade_id,
                      position.amount, position.symbol)
            return None
        fill = recorded_exit_fill(sold, rules)
        async with self.uow() as uow:
            trade = await uow.trades.get(position.user_id, position.trade_id)
            if trade is None:
                raise LookupError(f"position {position.trade_id} has no trade")
            entry_quote = trade.amount * trade.price
            profit = net_profit(entry_quote, fill)
            closed: TradeRecord = await uow.trades.close(
                trade.id, fill.price, reason, fill.fee_usdt, profit, profit_pct(profit, entry_quote),
                _closing_time(sold, trade.executed_at, now),
            )
            await uow.positions.remove(trade.id)
            unsold = position.amount - fill.quantity
            if unsold:
                await uow.dust.set(trade.user_id, trade.symbol, await uow.dust.get(trade.user_id, trade.symbol) + unsold)
            await uow.portfolios.record_close(trade.user_id, profit, closed.fees, now)
            await uow.commit()
        trades_log.info("EXIT user=%s %s %s @ %s pnl=%s", trade.user_id, trade.symbol, reason.value, fill.price, profit)
        await self.publish(trade.user_id, "position_closed", now, {
            "trade_id": trade.id, "symbol": trade.symbol, "exit_reason": reason.value, "exit_price": str(fill.price),
            "profit_loss": str(profit),
        })
        return closed

    async def _report_repair(self, position: PositionRecord, action: str, now: datetime, detail: str) -> None:
        """What reconciliation repaired, in the log and on the user's event stream."""
        log.warning("user %s trade %s %s: %s (%s)", position.user_id, position.trade_id, position.symbol, action,
                    detail)
        await self.publish(position.user_id, "reconciled", now, {
            "trade_id": position.trade_id, "symbol": position.symbol, "action": action, "detail": detail,
        })

    # ----- reconciliation --------------------------------------------------------------------------------------
    async def _reconcile(self, now: datetime) -> set[int]:
        """Finish what did not finish; returns the users whose state is still unknown (they do not trade)."""
        async with self.uow() as uow:
            entries: list[OrderRecord] = await uow.orders.unbooked_entries()
        unresolved = set()
        for row in entries:
            try:
                resolved = await self._resolve_entry(row, now)
            except (ExchangeError, ConfigurationError) as e:
                log.error("entry %s of user %s not reconciled: %s", row.client_order_id, row.user_id, e)
                resolved = False
            if not resolved:
                unresolved.add(row.user_id)
        async with self.uow() as uow:
            positions: list[PositionRecord] = await uow.positions.all()
        for position in positions:
            if position.oco_order_id is None and position.closing_reason is None and position.user_id not in unresolved:
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
                client_order_id=oco.list_client_order_id, user_id=user_id, purpose=Purpose.ADOPTED, symbol=oco.symbol,
                side=leg.side.value, type="OCO", quantity=leg.orig_qty, status=oco.list_status.value,
                price=oco.take_profit_leg.price, stop_price=leg.stop_price,
            ), now)
            log.warning("user %s: adopted order list %s that the bot did not place", user_id, oco.list_client_order_id)
            await self.publish(user_id, "error", now, {
                "symbol": oco.symbol, "message": f"found order list {oco.list_client_order_id} on the exchange that "
                "TRD Bot did not place; it is recorded and left alone",
            })

    async def _resolve_entry(self, row: OrderRecord, now: datetime) -> bool:
        """An entry without its trade: book and protect it if it filled, drop it if it never arrived. False while
        its outcome is unknown."""
        exchange = await self.exchanges.for_user(row.user_id)
        try:
            order = await exchange.get_order(row.symbol, row.client_order_id)
        except OrderNotFound:
            if row.status not in (PENDING_SEND, UNKNOWN):
                log.error("entry %s was %s on the exchange, which no longer knows it", row.client_order_id, row.status)
                return False
            await self._mark_order(row.client_order_id, OrderStatus.REJECTED.value, now, "never reached the exchange")
            return True
        except (TemporaryExchangeError, OrderStatusUnknown):
            return False
        await self._mark_order(row.client_order_id, order.status.value, now, order=order)
        if not order.status.is_final:
            return False  # a market order still working: ask again next cycle
        if order.executed_qty == 0:
            return True
        async with self.uow() as uow:
            booked = await uow.trades.by_entry(row.client_order_id)
        if booked is not None:
            await self._mark_order(row.client_order_id, order.status.value, now, trade_id=booked.id)
            return True
        trade = await self._finish_entry(exchange, row, order, now)
        position = await self._open_position(trade.id)
        await self._report_repair(position or _position_of(trade), "adopted entry found filled", now,
                                  f"{order.executed_qty} {row.symbol} bought by {row.client_order_id}")
        return True

    async def _reprotect(self, position: PositionRecord, now: datetime) -> None:
        """A position without its list: link a list an earlier attempt did place, else place one now. A temporary
        error is raised (the user waits for the next cycle), never taken for "not on the exchange"."""
        exchange = await self.exchanges.for_user(position.user_id)
        trade = await self._trade_of(position)
        if trade is None:
            return
        async with self.uow() as uow:
            attempts = await uow.orders.for_trade(trade.id, Purpose.PROTECT)
        for attempt in (a for a in attempts if a.status in (PENDING_SEND, UNKNOWN, ListStatus.EXECUTING.value)):
            try:
                oco = await exchange.get_oco_order_status(position.symbol, attempt.client_order_id)
            except OrderNotFound:
                await self._mark_order(attempt.client_order_id, OrderStatus.REJECTED.value, now, "not on the exchange")
                continue
            await self._mark_order(attempt.client_order_id, oco.list_status.value, now)
            if oco.is_open or oco.filled_leg is not None:  # a filled one is booked by this cycle's exit check
                await self._protected(trade, position, oco, now)
                await self._report_repair(position, "re-protected", now, f"linked order list {oco.list_client_order_id}")
                return
        log.warning("trade %s had no protection: placing it now", trade.id)
        if await self._protect(exchange, trade, now):
            await self._report_repair(position, "re-protected", now, "placed a new order list")


def _exit_reason(oco: OcoOrder) -> ExitReason | None:
    """Why a list calls for an exit: a filled leg (TP or SL), a stop the market gapped through (its leg still
    rests after the list ended: SL), or a list that ended otherwise (cancelled on the exchange: EMERGENCY)."""
    filled = oco.filled_leg
    if filled is not None:
        return _leg_reason(filled)
    if oco.is_open:
        return None
    stop_leg = oco.stop_loss_leg
    return ExitReason.STOP_LOSS if stop_leg.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED) \
        else ExitReason.EMERGENCY


def _leg_reason(leg: Order) -> ExitReason:
    return ExitReason.STOP_LOSS if leg.type in (OrderType.STOP_LOSS_LIMIT, OrderType.STOP_LOSS) \
        else ExitReason.TAKE_PROFIT


def _left_to_sell(position: PositionRecord, fills: Sequence[OrderRecord], rules: SymbolRules) -> Decimal:
    """What the next exit order sells: the position less what its exits sold, on the step; 0 when nothing the
    exchange would accept is left (below the minimum quantity, or the minimum notional at the last fill's price)."""
    sold = sum((row.executed_qty for row in fills), ZERO)
    quantity = rules.round_qty(position.amount - sold)
    if quantity < rules.min_qty or quantity <= 0:
        return ZERO
    last = next((row for row in reversed(fills) if row.executed_qty > 0), None)
    if last is not None and quantity * last.cumulative_quote_qty / last.executed_qty < rules.min_notional:
        return ZERO
    return quantity


def _closing_time(sold: Sequence[OrderRecord], opened_at: datetime, now: datetime) -> datetime:
    """When the exit filled, on the bot's clock: the exchange's execution time where it lies between the entry and
    now by the bot's clock (the same clock, as in paper trading, backtests and a venue-following clock: a stop that
    filled while the bot was down is booked at its fill), else now (a venue clock that runs apart from the bot's
    is never mixed into a duration)."""
    times = [row.transact_time for row in sold if row.transact_time is not None]
    filled_at = max(times) if times else now
    return filled_at if opened_at <= filled_at <= now else now


def _position_of(trade: TradeRecord) -> PositionRecord:
    return PositionRecord(trade.id, trade.user_id, trade.symbol, trade.amount, trade.price, trade.stop_loss,
                          trade.take_profit, None, trade.executed_at)


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
