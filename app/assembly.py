"""The engine's parts, assembled the same way for the service (app.container) and the backtester: the trading bot,
the paper venue's accounts, the features, the analysts. Kept apart from the container so that `trdbot backtest` and
`trdbot optimize` import only what a backtest runs (no FastAPI, database, migrations or google-genai: a test
checks the import set)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from app.analysts.replay import RecordedAnswer, ReplayAnalyzer
from app.analysts.rules import RuleBasedAnalyzer
from app.backtest.memory_store import MemoryStore
from app.backtest.runner import BacktestEngine
from app.backtest.strategy import StrategyOverrides
from app.config import Settings
from app.domain.analysts import AnalystKind
from app.domain.clock import Clock, SimulatedClock, WallClock
from app.domain.ports import ExchangeAdapter, SignalProvider, SymbolDirectory
from app.domain.profiles import AssetProfile
from app.engine.bot import BotSettings, ExchangeProvider, NothingOpen, Publish, PublishMany, TradingBot, UowFactory
from app.engine.metrics import Metrics
from app.features.builder import MarketFeatureBuilder
from app.features.levels import SupportResistanceDetector
from app.features.regime import MarketRegimeAnalyzer
from app.marketdata.candles import CandleStore
from app.marketdata.directory import CandleDirectory
from app.risk.manager import RiskManager
from app.venues.paper.account_cache import CachedSimAccountStore
from app.venues.paper.accounts import InMemorySimAccountStore
from app.venues.paper.exchange import MockBinanceService
from app.venues.paper.market import PaperMarket, SimulatedMarket

if TYPE_CHECKING:
    from app.analysts.gemini import GeminiAnalyzer
    from app.analysts.openai_compatible import OpenAICompatibleAnalyzer


def paper_account_id(user_id: int) -> str:
    return f"paper-{user_id}"


class PaperExchanges:
    """One simulated exchange account per user, built once and kept (its lock serialises that user's orders)."""

    def __init__(self, market: PaperMarket, store: CachedSimAccountStore | InMemorySimAccountStore,
                 clock: Clock) -> None:
        self.market, self.store, self.clock = market, store, clock
        self._services: dict[int, MockBinanceService] = {}

    async def for_user(self, user_id: int) -> MockBinanceService:
        service = self._services.get(user_id)
        if service is None:
            service = MockBinanceService(paper_account_id(user_id), self.market, self.store, self.clock)
            self._services[user_id] = service
        return service

    def cycle(self) -> contextlib.AbstractAsyncContextManager[object]:
        """A cycle reads each account at most once (the engine's CycleScoped)."""
        store = self.store
        return store.cycle() if isinstance(store, CachedSimAccountStore) else contextlib.nullcontext()


def build_gemini_analyzer(s: Settings, wall_clock: Clock, rules: RuleBasedAnalyzer) -> GeminiAnalyzer:
    """Gemini on the wall clock (its timeouts and breaker are about real calls); unconfigured means fallback."""
    from app.analysts.gemini import GeminiAnalyzer, make_gemini_client  # google-genai: ~0.2 s, only where used

    key = s.gemini_api_key.get_secret_value() if s.gemini_api_key else None
    client = make_gemini_client(key, s.gemini_base_url)
    fallback = rules if s.gemini_fallback == "rules" else None
    return GeminiAnalyzer(client, s.gemini_model, wall_clock, fallback=fallback,
                          max_entry_deviation_pct=s.max_entry_deviation_pct)


def build_openai_analyzer(s: Settings, wall_clock: Clock, rules: RuleBasedAnalyzer) -> OpenAICompatibleAnalyzer:
    """An OpenAI-compatible server (a local Ollama or vLLM) for users who keep market data away from Google."""
    import httpx

    from app.analysts.openai_compatible import OpenAICompatibleAnalyzer

    key = s.openai_api_key.get_secret_value() if s.openai_api_key else None
    fallback = rules if s.gemini_fallback == "rules" else None
    http = httpx.AsyncClient() if s.openai_base_url else None
    return OpenAICompatibleAnalyzer(http, s.openai_base_url, s.openai_model, wall_clock, api_key=key,
                                    fallback=fallback, max_entry_deviation_pct=s.max_entry_deviation_pct)


def build_analysts(settings: Settings, wall_clock: Clock) -> dict[str, SignalProvider]:
    rules = RuleBasedAnalyzer()
    return {
        AnalystKind.RULES: rules,
        AnalystKind.GEMINI: build_gemini_analyzer(settings, wall_clock, rules),
        AnalystKind.OPENAI: build_openai_analyzer(settings, wall_clock, rules),
    }


def feature_builder(settings: Settings, batch_indicators: bool = False) -> MarketFeatureBuilder:
    """`batch_indicators` (the backtester) computes the indicators of thousands of upcoming store windows in one go:
    the same numbers, but a refill holds the event loop for up to a second, which a serving process must not do."""
    levels = SupportResistanceDetector(settings.risk_limits().sr_touch_threshold_pct)
    return MarketFeatureBuilder(MarketRegimeAnalyzer(), levels, batch_indicators)


def assemble_trading_bot(settings: Settings, uow: UowFactory, exchanges: ExchangeProvider, market: ExchangeAdapter,
                         publish: Publish, clock: Clock, analysts: dict[str, SignalProvider],
                         metrics: Metrics | None = None, features: MarketFeatureBuilder | None = None,
                         symbols: SymbolDirectory | None = None, publish_many: PublishMany | None = None,
                         profiles: Mapping[str, AssetProfile] | None = None,
                         nothing_open: NothingOpen | None = None) -> TradingBot:
    """The engine's parts, the same for the live service and the backtester (only the books and clock differ)."""
    features = features or feature_builder(settings)
    risk_manager = RiskManager(settings.risk_limits(), profiles)
    return TradingBot(
        uow=uow, exchanges=exchanges, market=market, analysts=analysts, symbols=symbols,
        build_features=features.build, risk_manager=risk_manager, publish=publish,
        clock=clock, limits=risk_manager.limits, metrics=metrics, publish_many=publish_many, nothing_open=nothing_open,
        settings=BotSettings(
            user_rate_limit_s=settings.user_rate_limit_seconds,
            oco_place_retries=settings.oco_place_retries,
            user_batch_size=settings.engine_user_batch,
        ),
    )


def build_backtest_engine(settings: Settings, candles: CandleStore, clock: SimulatedClock,
                          recorded: Mapping[str, RecordedAnswer] | None = None,
                          strategy: StrategyOverrides | None = None) -> BacktestEngine:
    """The live composition with in-memory books and accounts: TradingBot, simulated exchange, same parts.
    `strategy` (a --config's `rule_analyst` and `asset_profiles`) replaces the rule analyst's thresholds and the
    asset profiles.

    The `gemini` and `openai` analysts replay recorded answers by prompt hash (both ask the same prompt); a prompt
    with no recording holds, or, with REPLAY_LIVE_MISSES (`--live-misses`), is asked of the live model.
    """
    market = SimulatedMarket(candles, slippage_pct=settings.sim_slippage_pct, fee_rate=settings.sim_fee_rate)
    store = MemoryStore()
    exchanges = PaperExchanges(market, InMemorySimAccountStore(), clock)
    market_data = MockBinanceService("market-data", market, InMemorySimAccountStore(), clock)
    strategy = strategy or StrategyOverrides()
    rules = RuleBasedAnalyzer(strategy.rules)
    misses = settings.replay_live_misses
    gemini = build_gemini_analyzer(settings, WallClock(), rules) if misses else None
    openai = build_openai_analyzer(settings, WallClock(), rules) if misses else None
    deviation = settings.max_entry_deviation_pct
    analysts: dict[str, SignalProvider] = {
        AnalystKind.RULES: rules,
        AnalystKind.GEMINI: ReplayAnalyzer(recorded or {}, live=gemini, max_entry_deviation_pct=deviation),
        AnalystKind.OPENAI: ReplayAnalyzer(recorded or {}, live=openai, max_entry_deviation_pct=deviation,
                                           name=AnalystKind.OPENAI.value),
    }
    features = feature_builder(settings, batch_indicators=True)
    bot = assemble_trading_bot(settings, store, exchanges, market_data, store.publish, clock, analysts,
                               features=features, symbols=CandleDirectory(candles, market.all_rules()),
                               publish_many=store.publish_many, profiles=strategy.profiles,
                               nothing_open=store.nothing_open if settings.backtest_quiet_cycles else None)
    return BacktestEngine(bot=bot, store=store, exchanges=exchanges, candles=candles, clock=clock, features=features,
                          workers=settings.backtest_workers)
