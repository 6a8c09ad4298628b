"""Composition root: builds every service from the settings and picks the concrete adapters."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.analysts.replay import RecordedAnswer, write_recorded_answers
from app.assembly import PaperExchanges, assemble_trading_bot, build_analysts, paper_account_id
from app.backtest_jobs import BacktestJobs
from app.config import Settings
from app.db import Database, PoolSettings
from app.domain.clock import Clock, VenueClock, WallClock, ms_from_utc, utc_from_ms
from app.domain.errors import ConfigurationError, DataError, TemporaryExchangeError, TradingError
from app.domain.ports import ExchangeAdapter, SymbolDirectory
from app.domain.records import EventRecord, LoginLimits, TradeRecord, UserAccount
from app.domain.risk import TradingConfig
from app.domain.symbols import Selection, selection_problems
from app.domain.values import Balance, ExitReason, SymbolRules, TradingMode, TradingState
from app.engine.bot import (
    ExchangeProvider,
    TradingBot,
)
from app.engine.loop import TradingLoop
from app.engine.metrics import Metrics
from app.handoffs import CloseDesk, CloseRequests, EventFeed
from app.leadership import EngineLeadership, leader_lock
from app.marketdata.candles import CandleStore
from app.marketdata.directory import CandleDirectory, Coverage
from app.notify.websocket import WebSocketManager
from app.read_caches import CheckedCache, LiveBalances, PriceBoard, TtlCache, UserDirectory
from app.read_caches import paper_balances as stored_paper_balances
from app.repositories import UnitOfWork, UnitOfWorkFactory
from app.repositories.retention import RetentionPolicy, RetentionPruner
from app.services.security import CredentialCipher, LoginGuard, PasswordHasher, TokenService
from app.venues.binance.client import BinanceService, default_base_url
from app.venues.binance.directory import VenueDirectory
from app.venues.binance.server_time import ServerTimeSyncs
from app.venues.paper.account_cache import CachedSimAccountStore
from app.venues.paper.accounts import InMemorySimAccountStore, SimAccountState
from app.venues.paper.exchange import MockBinanceService
from app.venues.paper.live_market import LiveMarket
from app.venues.paper.market import SimulatedMarket

log = logging.getLogger(__name__)


class Container:
    """Every service of one process. `run_engine`: this process is a candidate for the engine (it runs the loop
    while it holds the leader lock); `engine_apart`: an API process whose engine runs in another process (manual
    closes are handed to it, the WebSockets are fed from the events table); `migrate`: apply the migrations at
    start (`serve --workers` applies them once, before any process starts)."""

    def __init__(self, settings: Settings, clock: Clock | None = None, market_clock: Clock | None = None,
                 run_engine: bool = False, engine_apart: bool = False, migrate: bool = True) -> None:
        self.settings = settings
        self.clock: Clock = clock or WallClock()
        self.db = Database(settings.database_url, pool_settings(settings))
        self.uow = UnitOfWorkFactory(self.db.sessions)
        self.hasher = PasswordHasher(settings.argon2_time_cost, settings.argon2_memory_cost,
                                     settings.password_hash_workers, settings.password_hash_queue)
        self.logins = LoginGuard(self.hasher, self.clock, login_limits(settings))
        self.tokens = TokenService(settings.jwt_secret.get_secret_value(), settings.jwt_expire_minutes)
        key = settings.credentials_key.get_secret_value() if settings.credentials_key else None
        self.cipher = CredentialCipher(key)
        self.metrics = Metrics()
        self.users = UserDirectory(self.uow, TtlCache(self.clock, settings.user_cache_seconds))
        self.trade_pages: CheckedCache[tuple[object, ...], bytes] = CheckedCache(self.clock,
                                                                                settings.books_cache_seconds)
        self.paper_balances: CheckedCache[int, list[Balance]] = CheckedCache(self.clock, settings.books_cache_seconds)
        events = EventTable(self.uow, on_stored=lambda event: self.event_feed.note(event))
        self.websockets = WebSocketManager(events, events.many)
        self.event_feed = EventFeed(self.uow, self.websockets, self.clock, settings.handoff_poll_seconds,
                                    keys_changed=lambda user_id: self.forget_exchange(user_id))
        self.close_requests = CloseRequests(self.uow, self.clock, settings.manual_close_wait_seconds)
        self.candles = load_paper_candles(settings)
        self.market_clock: Clock = market_clock or self.clock
        self.market = SimulatedMarket(self.candles, slippage_pct=settings.sim_slippage_pct, fee_rate=settings.sim_fee_rate)
        self.exchanges: ExchangeProvider
        self.market_data: ExchangeAdapter
        self.symbols: SymbolDirectory
        self.venue: BinanceService | None = None  # the live market-data client, which also reads the venue's time
        self._bind_exchanges(self.market_clock)
        price_ttl_s = settings.price_cache_seconds if settings.uses_live_market else 0
        self.prices = PriceBoard(lambda: self.market_data, TtlCache(self.clock, price_ttl_s))
        self.analysts = build_analysts(settings, self.clock)  # on the wall clock: a replay does not rebuild them
        self.bot = build_trading_bot(self)
        self.loop: TradingLoop | None = None
        self.leadership: EngineLeadership | None = None
        self.run_engine, self.engine_apart, self.migrate = run_engine, engine_apart, migrate
        self.task_queue: Any = None  # ENGINE_DECIDE_ON=workers: the procrastinate App the leader enqueues through
        # API-started backtests run where the engine runs (its leader only), or here when no engine runs anywhere
        self.backtests = BacktestJobs(self.uow, settings, self.clock)

    def default_config(self, user_id: int) -> TradingConfig:
        return self.settings.trading_config(user_id)

    def _bind_exchanges(self, clock: Clock) -> None:
        self._bind_venues(clock)
        self.live_balances: LiveBalances | None = None
        if isinstance(self.exchanges, LiveExchanges):
            cache: TtlCache[int, list[Balance]] = TtlCache(self.clock, self.settings.live_balance_cache_seconds)
            self.live_balances = LiveBalances(self.exchanges, cache)

    def _bind_venues(self, clock: Clock) -> None:
        if self.settings.use_mock_binance and self.settings.market_source == "live":  # paper on the venue's market
            self.market_data = self.venue = public_market_client(self.settings, clock)
            market = LiveMarket(self.venue, self.settings.sim_slippage_pct, self.settings.sim_fee_rate)
            self.exchanges = PaperExchanges(market, self._paper_accounts(clock), clock)
            self.symbols = VenueDirectory(self.venue, clock)
            return
        paper = PaperExchanges(self.market, self._paper_accounts(clock), clock)
        if self.settings.use_mock_binance:
            self.exchanges = paper
            self.market_data = MockBinanceService("market-data", self.market, InMemorySimAccountStore(), clock)
            self.symbols = CandleDirectory(self.candles, self.market.all_rules())
            return
        s = self.settings
        time_syncs = ServerTimeSyncs(clock, s.time_sync_interval_seconds)  # one offset per venue, for all its clients
        self.exchanges = LiveExchanges(self.uow, self.cipher, s.binance_base_url, clock, s.binance_recv_window_ms,
                                       time_syncs)
        public_key = s.binance_api_key.get_secret_value() if s.binance_api_key else ""
        public_secret = s.binance_secret_key.get_secret_value() if s.binance_secret_key else ""
        base_url = s.binance_base_url or default_base_url(s.binance_testnet)
        self.market_data = self.venue = BinanceService(public_key, public_secret, base_url, clock,
                                                       time_sync=time_syncs.for_venue(base_url))
        self.symbols = VenueDirectory(self.venue, clock)

    def _paper_accounts(self, clock: Clock) -> CachedSimAccountStore:
        return database_sim_accounts(self.uow, clock, self.settings.paper_account_cache)

    def rebind_market_clock(self, clock: Clock) -> None:
        """Puts every market-time component on a new clock (a replay learns its start time only at start-up)."""
        self.market_clock = clock
        self._bind_exchanges(clock)
        self.bot = build_trading_bot(self)

    async def bot_trades(self, user_id: int) -> list[TradeRecord]:
        """Every trade of a user, oldest first (tests and tools)."""
        async with self.uow() as uow:
            items, _ = await uow.trades.page(user_id, limit=100_000)
        return sorted(items, key=lambda t: t.id)

    def analyst_status(self, analyzer: str) -> dict[str, object]:
        """Which analyst a user gets and whether it can be called now (Gemini's breaker, its fallback)."""
        provider = self.bot.analysts.get(analyzer)
        status = getattr(provider, "status", None)
        if status is None:
            return {"analyzer": analyzer, "configured": provider is not None}
        answer: dict[str, object] = status()
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in answer.items()}

    def forget_exchange(self, user_id: int) -> None:
        """A user's keys (and mode) changed: the next cycle builds a fresh adapter, the next request reads the user."""
        self.users.forget(user_id)
        if isinstance(self.exchanges, LiveExchanges):
            self.exchanges.forget(user_id)
        if self.live_balances is not None:
            self.live_balances.forget(user_id)

    async def listed_symbols(self) -> Mapping[str, SymbolRules]:
        """What users choose from: the venue's pairs (live) or the symbols with candles (paper), with their rules."""
        return await self.symbols.listed()

    def symbol_coverage(self, symbol: str) -> list[Coverage]:
        """The candles a paper symbol has (none for the live venue, which serves its own)."""
        return self.symbols.coverage(symbol) if isinstance(self.symbols, CandleDirectory) else []

    async def symbol_ranking(self) -> tuple[str, ...]:
        """The 24 h volume ranking now, or none while the venue cannot be asked."""
        try:
            return tuple(await self.symbols.ranked(self.market_clock.now()))
        except TradingError as e:
            log.warning("volume ranking unavailable: %s", e)
            return ()

    async def symbol_problems(self, requested: Iterable[str]) -> list[str]:
        """Why a list of symbols (and `top:N`) cannot be traded here, each problem naming its symbol."""
        return selection_problems(requested, await self.listed_symbols())

    @property
    def engine_state(self) -> TradingState:
        return self.bot.state

    def next_cycle_at(self) -> datetime | None:
        """When the engine's next cycle starts: its loop's plan when it runs here, else (an engine leads elsewhere)
        the next interval boundary of the market clock, the one every leader's loop waits for."""
        if self.loop is not None and self.loop.next_cycle_at is not None and self.engine_here:
            return self.loop.next_cycle_at
        if not self.in_service:
            return None
        step_ms = self.settings.trading_interval_seconds * 1000
        return utc_from_ms((ms_from_utc(self.market_clock.now()) // step_ms + 1) * step_ms)

    async def open_paper_account(self, uow: UnitOfWork, user_id: int) -> None:
        """Funds the user's simulated exchange account in the registration's own transaction."""
        state = SimAccountState()
        state.move("USDT", free_delta=self.settings.paper_start_balance)
        await uow.sim_accounts.save(paper_account_id(user_id), state.to_dict(), self.clock.now())

    async def balances(self, uow: UnitOfWork, user: UserAccount, refresh: bool = False) -> list[Balance]:
        """A paper account as the books hold it, read in the request's own unit of work (the engine's last word:
        what fills between cycles is booked by the next one, together with the trade); a live account as the
        venue answers, reused for LIVE_BALANCE_CACHE_SECONDS unless `refresh`."""
        if self.live_balances is None:
            return await self._paper_balances(uow, user.id)
        return await self.live_balances.read(uow, user.id, refresh)

    async def _paper_balances(self, uow: UnitOfWork, user_id: int) -> list[Balance]:
        """Read again only when the account was saved since (its JSON, a thousand orders, is then parsed by the
        database for its balances)."""
        account = paper_account_id(user_id)
        version = await uow.sim_accounts.version(account)
        balances = self.paper_balances.get(user_id, version)
        if balances is None:
            balances = stored_paper_balances(await uow.sim_accounts.balances(account))
            self.paper_balances.put(user_id, version, balances)
        return balances

    async def current_prices(self, user: UserAccount, symbols: Iterable[str]) -> dict[str, Decimal]:
        listed = await self.listed_symbols()
        return await self.prices.prices(symbol for symbol in symbols if symbol in listed)

    @property
    def engine_here(self) -> bool:
        """Whether orders may be sent from this process: no engine elsewhere, or this process leads it."""
        if self.engine_apart:
            return False
        return self.leadership is None or self.leadership.is_leader

    @property
    def in_service(self) -> bool:
        """A process of `serve` or `trdbot engine`: an engine runs, here or in another process, and other processes
        may store what this one must know (events for its WebSockets, a user's new exchange keys)."""
        return self.engine_apart or self.run_engine

    async def close_trade(self, uow: UnitOfWork, user: UserAccount, trade_id: int) -> TradeRecord:
        """A manual close: by the engine here (after the request's reads are ended, so the request holds no
        connection while the engine takes its own), else handed to the engine that leads."""
        if not self.engine_here:
            return await self.close_requests.close(uow, user.id, trade_id)
        await uow.rollback()
        return await self.bot.close_trade(user.id, trade_id, ExitReason.MANUAL)

    async def exchange_health(self) -> str:
        try:
            listed = await self.listed_symbols()
            await self.prices.price(next(iter(listed)))
        except (TradingError, StopIteration):
            return "degraded"
        return "ok"

    def mount_dashboard(self, app: FastAPI) -> None:
        """Serves the web dashboard at / when it is built (app/web)."""
        if WEB_DIR.is_dir() and (WEB_DIR / "index.html").exists():
            app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="dashboard")

    async def start(self, migrate: bool | None = None) -> None:
        if self.migrate if migrate is None else migrate:
            await self.db.migrate()
        if self.settings.follows_venue_clock:
            await self.follow_the_venue_clock()
        if self.venue is not None:
            with contextlib.suppress(TemporaryExchangeError):
                await self.venue.sync_time()
            try:  # the venue's pairs and rules, read at start (and again hourly): the API's symbol list needs them
                log.info("the venue lists %d pairs", len(await self.symbols.listed()))
            except TradingError as e:
                log.warning("the venue's exchangeInfo cannot be read now (%s): it is asked again when needed", e)
        if self.in_service:  # what other processes store: events for this one's sockets, changed exchange keys
            self.event_feed.poller.start()
        if self.run_engine and self.settings.engine_decide_on == "workers":
            await self.decide_on_workers()
        if self.run_engine:
            await self.stand_for_leader()
        elif not self.engine_apart:
            self.backtests.start()

    async def decide_on_workers(self) -> None:
        """ENGINE_DECIDE_ON=workers: this engine, while it leads, hands each cycle's users to `trdbot worker`
        processes through the task queue in PostgreSQL (app/workers.py)."""
        from app.workers import WorkerDecisions, ensure_queue_schema, task_app

        s = self.settings
        if problems := s.decide_on_workers_problems():
            raise ConfigurationError(problems[0])
        await ensure_queue_schema(s.database_url)
        self.task_queue = task_app(s.database_url)
        await self.task_queue.open_async()
        deadline_s = s.worker_cycle_deadline_seconds or float(s.trading_interval_seconds)
        self.bot.decide_elsewhere = WorkerDecisions(self.db.engine, self.task_queue, s.engine_user_batch,
                                                    s.worker_lease_seconds, deadline_s)

    async def stand_for_leader(self) -> None:
        """Join the election of the engine's leader: lead at once if no other process does, else stand by and ask
        again every LEADER_RETRY_SECONDS (at most half a cycle, so a dead leader's next cycle is not missed)."""
        s = self.settings
        self.loop = TradingLoop(self.bot, self.market_clock, s.trading_interval_seconds,
                                observe=self.metrics.cycle_duration.observe)
        desk = CloseDesk(self.uow, self.bot.close_trade, self.clock, s.handoff_poll_seconds)
        retry_s = min(s.leader_retry_seconds, s.trading_interval_seconds / 2)
        duties = LeaderDuties(self.loop, desk, self.backtests)
        self.leadership = EngineLeadership(leader_lock(s.database_url), duties, self.clock, retry_s)
        await self.leadership.step()
        self.leadership.start()

    async def follow_the_venue_clock(self) -> None:
        """MARKET_CLOCK=venue: cycles, timeouts, rate-limit waits and stamps run on the venue's server time, so the
        live path runs consistently against `trdbot exchange-sim --speed N` (the analysts stay on the wall clock)."""
        clock = VenueClock(self._venue_time_ms, wall=self.clock)
        try:
            await clock.start()
        except TradingError as e:
            raise ConfigurationError(f"MARKET_CLOCK=venue: the venue's server time cannot be read: {e}") from e
        wall_client = self.venue
        self.rebind_market_clock(clock)
        if wall_client is not None:
            await wall_client.aclose()
        log.info("market clock follows the venue: %s at %.4gx the wall clock", clock.now().isoformat(), clock.rate)

    async def _venue_time_ms(self) -> int:
        # looked up on each call: after the rebind the market-data client runs on the very clock it samples for
        if self.venue is None:
            raise ConfigurationError("MARKET_CLOCK=venue needs a venue's client (USE_MOCK_BINANCE=false or "
                                     "MARKET_SOURCE=live)")
        return await self.venue.server_time_ms()

    async def stop(self) -> None:
        await self.event_feed.poller.stop()
        await self.backtests.stop()
        if self.leadership is not None:
            await self.leadership.stop()
        elif self.loop is not None:
            await self.loop.stop()
        if self.venue is not None:
            await self.venue.aclose()
        if self.task_queue is not None:
            await self.task_queue.close_async()
        await self.db.dispose()


WEB_DIR = Path(__file__).parent / "web"


class EventTable:
    """Where the WebSocket manager keeps every event it pushes: the events table, one commit each (or for many)."""

    def __init__(self, uow: UnitOfWorkFactory, on_stored: Callable[[EventRecord], None] | None = None) -> None:
        self.uow, self.on_stored = uow, on_stored

    async def __call__(self, event: EventRecord) -> EventRecord:
        async with self.uow() as uow:
            stored = await uow.events.add(event)
            await uow.commit()
        if self.on_stored is not None:
            self.on_stored(stored)
        return stored

    async def many(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        async with self.uow() as uow:
            stored = await uow.events.add_many(events)
            await uow.commit()
        if self.on_stored is not None:
            for event in stored:
                self.on_stored(event)
        return stored


class LeaderDuties:
    """What only the leading engine runs: the trading loop, the desk that closes what API processes marked, and the
    backtests users queued (one runner per server, so BACKTEST_CONCURRENCY holds for the server)."""

    def __init__(self, loop: TradingLoop, desk: CloseDesk, backtests: BacktestJobs) -> None:
        self.loop, self.desk, self.backtests = loop, desk, backtests

    def start(self) -> None:
        self.loop.start()
        self.desk.poller.start()
        self.backtests.start()

    async def stop(self) -> None:
        await self.backtests.stop()
        await self.desk.poller.stop()
        await self.loop.stop()


def load_paper_candles(settings: Settings) -> CandleStore:
    """Every symbol with candles in the data directory (the default symbols must be among them) for the paper
    venue's replay; the live venue, and paper trading on its market, read the exchange and need no candle file."""
    if settings.uses_live_market:
        return CandleStore({})
    candles = CandleStore.load(settings.data_dir)
    missing = [s for s in Selection.of(settings.default_symbols).named if not candles.has_symbol(s)]
    if missing:
        raise DataError(f"DEFAULT_SYMBOLS names {', '.join(missing)}, which have no candle files in "
                        f"{settings.data_dir} (`trdbot data download --symbols {','.join(missing)}` fetches them)")
    return candles


def public_market_client(settings: Settings, clock: Clock) -> BinanceService:
    """MARKET_SOURCE=live: the key-less client of the venue whose public market data paper accounts trade on
    (Binance's production market unless BINANCE_BASE_URL names another: the testnet's market is not the market)."""
    base_url = settings.binance_base_url or default_base_url(testnet=False)
    time_sync = ServerTimeSyncs(clock, settings.time_sync_interval_seconds).for_venue(base_url)
    return BinanceService("", "", base_url, clock, time_sync=time_sync)


def retention_policy(s: Settings) -> RetentionPolicy:
    return RetentionPolicy(s.retention_analyses_days, s.retention_decisions_days, s.retention_events_days,
                           s.retention_batch_rows)


def pool_settings(s: Settings) -> PoolSettings:
    return PoolSettings(s.db_pool_size, s.db_max_overflow, s.db_pool_timeout_seconds)


def login_limits(s: Settings) -> LoginLimits:
    return LoginLimits(
        user_max_failures=s.login_max_failures, user_window_s=s.login_lockout_seconds,
        address_free_attempts=s.login_address_free_attempts, address_backoff_s=s.login_address_backoff_seconds,
        address_max_backoff_s=s.login_address_max_backoff_seconds, address_window_s=s.login_address_window_seconds,
        prune_interval_s=s.login_throttle_prune_seconds,
    )


class DatabaseSimAccountStore:
    """Keeps simulated exchange accounts in the sim_accounts table, so paper accounts survive restarts: the rows as
    the paper venue's CachedSimAccountStore reads and saves them (versioned; see app/venues/paper/account_cache.py)."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self.uow, self.clock = uow, clock

    async def load(self, account_id: str) -> SimAccountState | None:
        """The account as stored, read now (tests and tools: the engine reads through its cache)."""
        found = (await self.read([account_id])).get(account_id)
        return SimAccountState.from_dict(found[1]) if found is not None else None

    async def versions(self, account_ids: Sequence[str]) -> dict[str, int]:
        async with self.uow() as uow:
            return await uow.sim_accounts.versions(account_ids)

    async def read(self, account_ids: Sequence[str]) -> dict[str, tuple[int, dict[str, Any]]]:
        async with self.uow() as uow:
            return await uow.sim_accounts.read(account_ids)

    async def save_over(self, account_id: str, state: dict[str, Any], version: int | None) -> int | None:
        async with self.uow() as uow:
            saved = await uow.sim_accounts.save_over(account_id, state, version, self.clock.now())
            await uow.commit()
        return saved


def database_sim_accounts(uow: UnitOfWorkFactory, clock: Clock, capacity: int) -> CachedSimAccountStore:
    """Paper accounts in the database, each read once per cycle and kept between cycles while it is current."""
    return CachedSimAccountStore(DatabaseSimAccountStore(uow, clock), capacity)


class LiveExchanges:
    """One BinanceService per user, built from the user's encrypted keys; testnet or production by the user's mode."""

    def __init__(self, uow: UnitOfWorkFactory, cipher: CredentialCipher, base_url: str | None, clock: Clock,
                 recv_window_ms: int, time_syncs: ServerTimeSyncs | None = None) -> None:
        self.uow, self.cipher, self.base_url, self.clock = uow, cipher, base_url, clock
        self.recv_window_ms = recv_window_ms
        self.time_syncs = time_syncs or ServerTimeSyncs(clock)
        self._services: dict[int, BinanceService] = {}

    async def for_user(self, user_id: int, uow: UnitOfWork | None = None) -> BinanceService:
        """The user's adapter; its keys are read through `uow` when given (a request's own), else a new one."""
        service = self._services.get(user_id)
        if service is not None:
            return service
        if uow is not None:
            credentials = await uow.credentials.get(user_id)
        else:
            async with self.uow() as own:
                credentials = await own.credentials.get(user_id)
        if credentials is None:
            raise ConfigurationError(f"user {user_id} has no exchange keys: PUT /account/exchange-keys first")
        base_url = self.base_url or default_base_url(credentials.mode != TradingMode.LIVE.value)
        service = BinanceService(
            self.cipher.decrypt(credentials.api_key_encrypted), self.cipher.decrypt(credentials.api_secret_encrypted),
            base_url, self.clock, recv_window_ms=self.recv_window_ms, time_sync=self.time_syncs.for_venue(base_url),
        )
        # no sync here: the venue's shared offset is measured (or refreshed) before the first request that needs it
        self._services[user_id] = service
        return service

    def forget(self, user_id: int) -> None:
        """Drop a cached adapter after the user's keys changed."""
        self._services.pop(user_id, None)


def build_trading_bot(container: Container) -> TradingBot:
    """The service's engine on the container's exchanges and market clock, in the configured TRADING_STATE."""
    bot = assemble_trading_bot(
        container.settings, container.uow, container.exchanges, container.market_data,
        container.websockets.publish, container.market_clock, container.analysts, container.metrics,
        symbols=container.symbols, publish_many=container.websockets.publish_many,
    )
    bot.housekeeping = RetentionPruner(container.uow, retention_policy(container.settings)).prune
    bot.housekeeping_interval_s = container.settings.retention_interval_seconds
    bot.state = container.settings.trading_state
    return bot


async def export_recorded_answers(settings: Settings, out: Path, symbol: str | None = None) -> int:
    """The decision log's recorded model answers, one per prompt hash, for `trdbot decisions export`."""
    database = Database(settings.database_url)
    async with UnitOfWorkFactory(database.sessions)() as uow:
        records = await uow.analyses.recorded(symbol)
    await database.dispose()
    answers = [
        RecordedAnswer(r.prompt_hash, r.raw_response, r.model, r.symbol, r.created_at.isoformat())
        for r in records if r.prompt_hash is not None and r.raw_response is not None
    ]
    return write_recorded_answers(out, answers)
