"""Settings: one validated class read from the environment and `.env` (names as in API.md)."""

from __future__ import annotations

import os
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.domain.analysts import AnalystKind
from app.domain.risk import RiskLimits, TradingConfig
from app.domain.values import TradingState

DEFAULT_JWT_SECRET = "change-me-in-production"
MIN_JWT_SECRET_LENGTH = 32  # characters; `trdbot keygen` prints 64
KNOWN_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
BUNDLED_DATA_DIR = Path(__file__).parent / "data" / "sample"

Pct = Annotated[Decimal, Field(ge=0, le=100)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False)

    # Service
    database_url: str = "sqlite+aiosqlite:///./var/trdbot.db"
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    jwt_secret_file: Path | None = None  # read into jwt_secret (a mounted secret, not an environment variable)
    jwt_expire_minutes: int = Field(1440, ge=1, le=60 * 24 * 30)
    credentials_key: SecretStr | None = None
    credentials_key_file: Path | None = None
    log_dir: Path = Path("./logs")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    login_max_failures: int = Field(5, ge=1)  # per username (case-folded), within LOGIN_LOCKOUT_SECONDS
    login_lockout_seconds: int = Field(300, ge=1)
    login_address_free_attempts: int = Field(10, ge=1)  # per client address before the backoff starts
    login_address_backoff_seconds: int = Field(1, ge=1)  # the first wait; it doubles with each further attempt
    login_address_max_backoff_seconds: int = Field(900, ge=1)
    login_address_window_seconds: int = Field(3600, ge=1)  # an address is forgotten after this long without tries
    login_throttle_prune_seconds: int = Field(600, ge=1)  # how often old throttle rows are deleted
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_cost: int = Field(65536, ge=8)
    password_hash_workers: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2), ge=1, le=64)
    password_hash_queue: int = Field(32, ge=1)  # hashes waiting beyond this answer 503 at once
    max_body_bytes: int = Field(65536, ge=1024)  # larger request bodies answer 413
    api_docs: bool = True  # /docs, /redoc (served from the installed package, no CDN) and /openapi.json
    forwarded_allow_ips: str | None = None  # proxies trusted for X-Forwarded-For (uvicorn's forwarded_allow_ips)
    paper_start_balance: Decimal = Field(Decimal("10000"), gt=0)
    trading_state: TradingState = TradingState.ACTIVE

    # Processes, connections and memory (README: Deploying `serve`)
    api_workers: int = Field(0, ge=0, le=64)  # API processes beside one engine process; 0: one process for both
    db_pool_size: int = Field(5, ge=1, le=100)  # connections each process keeps open
    db_max_overflow: int = Field(5, ge=0, le=100)  # opened beyond the pool under a burst, closed after
    db_pool_timeout_seconds: float = Field(5.0, gt=0, le=300)  # a request waiting longer for one answers 503
    leader_retry_seconds: float = Field(5.0, gt=0, le=300)  # how often a standby engine asks for the leader lock
    engine_nice: int = Field(10, ge=0, le=19)  # the engine process's niceness: requests before cycles for the CPU
    access_log: bool = True  # uvicorn's line per request (a reverse proxy often keeps its own)
    gc_freeze: bool = True  # move the start-up heap out of the collector's sight once the process is ready
    gc_gen0_threshold: int = Field(20000, ge=100, le=1_000_000)  # allocations between young collections
    user_cache_seconds: float = Field(300.0, ge=0, le=3600)  # the user a token names, reused this long per process
    books_cache_seconds: float = Field(300.0, ge=0, le=3600)  # a page of trades or paper balances, reused while
    # the books say they are unchanged (checked on every request), at most this long
    live_balance_cache_seconds: float = Field(10.0, ge=0, le=3600)  # a live account's balances, reused this long
    price_cache_seconds: float = Field(2.0, ge=0, le=60)  # live market prices shown by the API, reused this long
    handoff_poll_seconds: float = Field(1.0, gt=0, le=60)  # how often one process looks for what another left:
    # new events for an API process's WebSockets, manual closes for the leading engine
    manual_close_wait_seconds: float = Field(10.0, ge=0, le=120)  # an API process waits this long for the engine

    # Exchange
    use_mock_binance: bool = True
    binance_api_key: SecretStr | None = None
    binance_secret_key: SecretStr | None = None
    binance_testnet: bool = True
    binance_base_url: str | None = None
    binance_recv_window_ms: int = Field(5000, ge=1, le=60000)
    time_sync_interval_seconds: float = Field(60.0, gt=0, le=3600)  # of the market clock
    market_clock: Literal["wall", "venue"] = "wall"  # venue: market time follows the exchange's server time (live)
    market_source: Literal["replay", "live"] = "replay"  # paper mode: stored candles, or the venue's public data
    market_data_dir: Path | None = None
    replay_speed: float = Field(1.0, gt=0, le=100000)
    sim_slippage_pct: Decimal = Field(Decimal("0.02"), ge=0, le=5)
    sim_fee_rate: Decimal = Field(Decimal("0.001"), ge=0, le=Decimal("0.01"))
    oco_place_retries: int = Field(3, ge=1, le=10)

    # Analyst
    gemini_api_key: SecretStr | None = None
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None
    default_analyzer: AnalystKind = AnalystKind.RULES
    gemini_fallback: Literal["hold", "rules"] = "hold"
    replay_live_misses: bool = False
    # quiet cycles (nothing open in the books) skip reconciliation and the exit checks, which cannot act in them
    backtest_quiet_cycles: bool = True
    backtest_workers: int | None = Field(None, ge=0)  # processes computing analyses ahead; None: one per core (0 on one)
    # Backtests from the API (README "API at a glance": POST /backtests)
    backtest_concurrency: int = Field(1, ge=1, le=16)  # runs at once per server; the others wait queued
    backtest_max_queued: int = Field(3, ge=1, le=100)  # a user's queued and running runs; one more answers 429
    backtest_max_days: int = Field(92, ge=1, le=3660)  # the longest span one run may cover
    backtest_max_symbols: int = Field(10, ge=1, le=20)
    backtest_timeout_seconds: float = Field(1800, gt=0)  # a run still going after this is stopped and failed
    backtest_poll_seconds: float = Field(2.0, gt=0, le=60)  # how often the runner looks for runs queued elsewhere
    openai_base_url: str | None = None
    openai_model: str = "llama3.1"
    openai_api_key: SecretStr | None = None

    # Cadence
    trading_interval_seconds: int = Field(300, ge=1)
    user_rate_limit_seconds: int = Field(300, ge=0)

    # Scale (README "Scale")
    engine_user_batch: int = Field(1000, ge=1, le=100_000)  # users decided together: a few queries, one write
    paper_account_cache: int = Field(20_000, ge=0)  # paper accounts kept in memory between cycles (while current)
    # where the users of a cycle are decided: in the engine's process, or by `trdbot worker` processes (PostgreSQL)
    engine_decide_on: Literal["local", "workers"] = "local"
    worker_heartbeat_seconds: float = Field(5.0, gt=0, le=300)  # how often a worker tells the database it lives
    worker_lease_seconds: float = Field(30.0, gt=0, le=3600)  # a batch whose worker was silent this long is redone
    worker_cycle_deadline_seconds: float | None = Field(None, gt=0)  # how long a leader waits for its batches
    worker_stall_seconds: float = Field(0.0, ge=0)  # tests only: the first batch's entries, once sent, pause this long
    retention_analyses_days: int = Field(90, ge=0)  # 0 keeps them forever; analyses a trade or order names are kept
    retention_decisions_days: int = Field(90, ge=0)  # users' decision rows (an entry's row stays with its trade)
    retention_events_days: int = Field(30, ge=0)
    retention_interval_seconds: int = Field(3600, ge=60)  # how often the loop prunes, between cycles
    retention_batch_rows: int = Field(5000, ge=100, le=100_000)  # rows deleted per statement and commit

    # Risk rules (DESIGN.md section 5)
    # the rule-based confidence is a rank (app/analysts/rule_confidence.py): 60 turns away setups scoring below
    # about the lowest fifth of the calibration's, the part that won least often; higher bars found no better
    # trades on 2022-2025 (README, The analysts)
    min_signal_confidence: int = Field(60, ge=0, le=100)
    confidence_floor: int = Field(50, ge=0, le=100)
    confidence_ceiling: int = Field(95, ge=0, le=100)
    win_rate_lookback_trades: int = Field(20, ge=1)
    win_rate_min_trades: int = Field(10, ge=1)
    low_win_rate_pct: Pct = Decimal("40")
    high_win_rate_pct: Pct = Decimal("60")
    low_win_rate_raise: int = Field(5, ge=0, le=50)
    high_win_rate_lower: int = Field(10, ge=0, le=50)
    randomize_thresholds: bool = True
    threshold_jitter_pct: Decimal = Field(Decimal("8"), ge=0, le=50)
    random_seed: int = 42
    risk_per_trade_pct: Decimal = Field(Decimal("1"), ge=Decimal("0.1"), le=2)
    max_balance_trade_ratio: Decimal = Field(Decimal("0.01"), gt=0, le=1)
    min_trade_value: Decimal = Field(Decimal("5"), ge=0)
    min_account_balance: Decimal = Field(Decimal("10"), ge=0)
    min_risk_reward: Decimal = Field(Decimal("1.5"), gt=0)
    max_risk_reward: Decimal = Field(Decimal("3"), gt=0)
    min_stop_distance_pct: Decimal = Field(Decimal("0.8"), gt=0, le=50)
    max_stop_distance_pct: Decimal = Field(Decimal("2.5"), gt=0, le=50)
    min_target_distance_pct: Decimal = Field(Decimal("1.5"), gt=0, le=100)
    max_target_distance_pct: Decimal = Field(Decimal("5"), gt=0, le=100)
    daily_trade_limit: int = Field(5, ge=1, le=100)
    daily_pacing: bool = True  # at most floor(limit x elapsed fraction of the UTC day) + 1 entries so far
    max_open_positions: int = Field(3, ge=1, le=20)
    position_timeout_minutes: int = Field(480, ge=5, le=10080)
    trading_hours_start: time | None = None
    trading_hours_end: time | None = None
    sr_touch_threshold_pct: Decimal = Field(Decimal("0.5"), gt=0, le=10)
    max_entry_deviation_pct: Decimal = Field(Decimal("1"), gt=0, le=20)
    stop_limit_gap_pct: Decimal = Field(Decimal("0.2"), ge=0, le=5)
    default_symbols: tuple[str, ...] = KNOWN_SYMBOLS

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("DATABASE_URL must use sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        if self.jwt_secret_file is not None:
            self.jwt_secret = SecretStr(_read_secret(self.jwt_secret_file, "JWT_SECRET_FILE"))
        if self.credentials_key_file is not None:
            self.credentials_key = SecretStr(_read_secret(self.credentials_key_file, "CREDENTIALS_KEY_FILE"))
        return self

    @model_validator(mode="after")
    def _ordered_ranges(self) -> Settings:
        pairs = [
            ("min_stop_distance_pct", "max_stop_distance_pct"),
            ("min_target_distance_pct", "max_target_distance_pct"),
            ("min_risk_reward", "max_risk_reward"),
            ("confidence_floor", "confidence_ceiling"),
            ("low_win_rate_pct", "high_win_rate_pct"),
        ]
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low.upper()} must not exceed {high.upper()}")
        return self

    @model_validator(mode="after")
    def _venue_clock_needs_a_venue(self) -> Settings:
        if self.market_clock == "venue" and not self.uses_live_market:
            raise ValueError("MARKET_CLOCK=venue follows an exchange's server time: it needs USE_MOCK_BINANCE=false "
                             "or MARKET_SOURCE=live (the paper exchange's replay runs on REPLAY_SPEED)")
        return self

    @property
    def is_live(self) -> bool:
        return not self.use_mock_binance

    @property
    def uses_live_market(self) -> bool:
        """Market data from the venue: live trading, or paper trading on the live market (MARKET_SOURCE=live)."""
        return self.is_live or self.market_source == "live"

    @property
    def follows_venue_clock(self) -> bool:
        return self.uses_live_market and self.market_clock == "venue"

    def backtest_run_dir(self, user_id: int, run_id: int) -> Path:
        """Where an API-started backtest writes its files: <LOG_DIR>/backtests/<user id>/<run id>/."""
        return self.log_dir / "backtests" / str(user_id) / str(run_id)

    @property
    def data_dir(self) -> Path:
        return self.market_data_dir or BUNDLED_DATA_DIR

    def trading_config(self, user_id: int) -> TradingConfig:
        """A new user's trading config (inactive): the service defaults."""
        return TradingConfig(
            user_id=user_id, is_active=False, symbols=tuple(self.default_symbols),
            risk_per_trade_pct=self.risk_per_trade_pct, max_open_positions=self.max_open_positions,
            daily_trade_limit=self.daily_trade_limit, min_signal_confidence=self.min_signal_confidence,
            max_balance_trade_ratio=self.max_balance_trade_ratio, trading_hours_start=self.trading_hours_start,
            trading_hours_end=self.trading_hours_end, position_timeout_minutes=self.position_timeout_minutes,
            analyzer=self.default_analyzer,
        )

    def risk_limits(self) -> RiskLimits:
        names = RiskLimits.__dataclass_fields__.keys()
        return RiskLimits(**{name: getattr(self, name) for name in names})

    def serve_problems(self) -> list[str]:
        """What makes this configuration unsafe to serve at all: a token signing key anyone could know or guess."""
        secret = self.jwt_secret.get_secret_value()
        if secret == DEFAULT_JWT_SECRET:
            return ["JWT_SECRET is not set (the built-in placeholder is public: anyone could sign tokens); set "
                    "JWT_SECRET or JWT_SECRET_FILE to a long random value, e.g. from `trdbot keygen`"]
        if len(secret) < MIN_JWT_SECRET_LENGTH:
            return [f"JWT_SECRET has {len(secret)} characters; at least {MIN_JWT_SECRET_LENGTH} are needed "
                    "(`trdbot keygen` prints one)"]
        return []

    def worker_problems(self) -> list[str]:
        """What keeps the API and the engine from running in processes of their own."""
        if self.database_url.startswith("sqlite") and (":memory:" in self.database_url or
                                                        self.database_url.endswith("://")):
            return ["an in-memory SQLite database belongs to one process: API workers need a database file or "
                    "PostgreSQL (or serve without --workers)"]
        return []

    def decide_on_workers_problems(self) -> list[str]:
        """What keeps ENGINE_DECIDE_ON=workers (and `trdbot worker`) from running: the task queue lives in
        PostgreSQL."""
        if not self.database_url.startswith("postgresql"):
            return ["ENGINE_DECIDE_ON=workers and `trdbot worker` need PostgreSQL (the batches are queued in it); "
                    "with SQLite the engine decides every user itself (ENGINE_DECIDE_ON=local)"]
        return []

    def live_problems(self) -> list[str]:
        """What makes this configuration unsafe for real money."""
        problems = self.serve_problems()
        if self.credentials_key is None:
            problems.append("CREDENTIALS_KEY is not set (nor CREDENTIALS_KEY_FILE); generate one with `trdbot keygen`")
        return problems


def _read_secret(path: Path, setting: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ValueError(f"{setting}: cannot read {path}: {e.strerror}") from e
    if not value:
        raise ValueError(f"{setting}: {path} is empty")
    return value
