"""Each symbol's shared work in a cycle: market data, features and one analyst answer, stored in the decision log."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from app.domain.analysts import AnalystKind
from app.domain.books import Books
from app.domain.errors import ExchangeError
from app.domain.ports import ExchangeAdapter, SignalProvider
from app.domain.records import AnalysisRecord
from app.domain.risk import TradingConfig
from app.domain.values import AnalystReport, Candle, MarketFeatures, Signal, Timeframe
from app.engine.settings import CANDLES, log

FeatureBuilder = Callable[[str, datetime, Sequence[Candle], Sequence[Candle], Sequence[Candle]], MarketFeatures]

def _confluence_score(confluence: float) -> Decimal:
    """The confluence as the decision log keeps it: two decimals."""
    return Decimal(str(round(confluence, 2)))


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



class MarketAnalysis:
    """Market data, features and the analyst's answer per symbol and analyst kind, once per cycle for every user."""

    def __init__(self, books: Books, market: ExchangeAdapter, analysts: Mapping[str, SignalProvider],
                 build_features: FeatureBuilder) -> None:
        self.uow = books
        self.market = market
        self.analysts = analysts
        self.build_features = build_features
        self.ahead: AnalysesAhead | None = None  # a backtest's precomputed analyses

    async def analyze_symbols(self, configs: Sequence[TradingConfig], now: datetime) -> dict[tuple[str, str], SymbolAnalysis]:
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
            shared[symbol] = await self.features_or_none(symbol, now)
        features = shared[symbol]
        if features is None:
            return None
        provider = self.analysts.get(analyzer) or self.analysts[AnalystKind.RULES]
        return SymbolAnalysis.of(features, await analyze_with(provider, features))

    async def market_features(self, symbol: str, now: datetime) -> MarketFeatures:
        """The cycle's features of one symbol (market data errors propagate)."""
        snapshot = await self._fetch_market_snapshot(symbol)
        return self.build_features(symbol, now, snapshot[Timeframe.M5], snapshot[Timeframe.M15], snapshot[Timeframe.H1])

    async def features_or_none(self, symbol: str, now: datetime) -> MarketFeatures | None:
        """The cycle's features of one symbol, or None (logged) when its market data is missing or unusable."""
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
